"""X-Ray tracing of the handlers (Powertools Tracer), imported only when the stack turns it on.

The template sets ``POWERTOOLS_TRACE_DISABLED`` to ``false`` only with ``Tracing=Active``. Otherwise (and
locally, where it is unset) ``traced`` hands back the handler itself and nothing of the X-Ray SDK is
imported: the Tracer and its patching cost a cold start a few hundred milliseconds (AWS-FACTS, section 11).
On, the handler runs inside ``Tracer.capture_lambda_handler`` with the AWS SDK and ``http.client`` patched, so
the DynamoDB, SQS and Secrets Manager calls and the provider APIs show as subsegments. Responses are not
recorded (they carry event data).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: What the Tracer patches: the AWS SDK and the standard HTTP client (urllib3 and the provider APIs ride on it).
PATCHED = ("botocore", "httplib")


def enabled() -> bool:
    """Tracing on: the template's ``POWERTOOLS_TRACE_DISABLED=false`` (Tracing=Active)."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("false", "0")


def traced(handler: F) -> F:
    """``handler`` inside the Powertools Tracer when tracing is on; else ``handler`` itself, at no cost."""
    if not enabled():
        return handler
    from aws_lambda_powertools import Tracer

    tracer = Tracer(patch_modules=PATCHED)
    return tracer.capture_lambda_handler(handler, capture_response=False)  # type: ignore[return-value]
