"""One ingest function for several providers: the route picks the adapter's pipeline.

Each provider is built once at init. A provider whose secret is not configured
does not stop the others: its route answers 503 ``not_configured`` (the
provider retries, and gets through once the secret is set) and the error is
logged at init. Settings every provider needs (table, queue) still fail fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exactly_once.core.declaration import Provider
from exactly_once.core.errors import ConfigurationError, HttpError, ServiceUnavailableError
from exactly_once.core.settings import IngestSettings
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.ingest.adapters.base import WebhookAdapter
from exactly_once.ingest.apigw import error_response
from exactly_once.ingest.build import webhook_ingest
from exactly_once.ingest.pipeline import WebhookIngest

AdapterFactory = Callable[[], WebhookAdapter]
_PARAM = re.compile(r"\{(\w+)\}")


class RouteNotFoundError(HttpError):
    """No provider is served on this path."""

    def __init__(self, path: str) -> None:
        super().__init__(404, "not_found", f"no webhook is served at {path[:200]}")


@dataclass(frozen=True)
class Route:
    template: str  # "/webhooks/standard/{source}", as in template.yaml
    pattern: re.Pattern[str]
    ingest: WebhookIngest | None
    problem: str = ""  # why the provider is not configured

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.rstrip("/") or "/")
        return found.groupdict() if found else None


def provider_of(template: str) -> str:
    """The provider a webhook route serves: ``/webhooks/standard/{source}`` -> ``standard``."""
    parts = [p for p in template.split("/") if p and not p.startswith("{")]
    return parts[1] if len(parts) > 1 and parts[0] == "webhooks" else (parts[-1] if parts else "unknown")


def compile_template(template: str) -> re.Pattern[str]:
    parts = _PARAM.split(template)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(regex)


class IngestRouter:
    @classmethod
    def serving(cls, providers: Iterable[Provider], settings: IngestSettings | None = None) -> IngestRouter:
        """A router for these declared providers, each on its declared route with its declared adapter."""
        factories: dict[str, AdapterFactory] = {}
        for declared in providers:
            if declared.route is None or declared.adapter is None:
                raise ConfigurationError(f"provider {declared.name!r} declares no webhook route")
            factories[declared.route] = declared.adapter.load()
        return cls(factories, settings)

    def __init__(
        self,
        factories: Mapping[str, AdapterFactory],
        settings: IngestSettings | None = None,
        wire: Callable[[WebhookAdapter, IngestSettings], WebhookIngest] = webhook_ingest,
    ) -> None:
        settings = settings or IngestSettings.from_env()
        self.routes: list[Route] = []
        for template, factory in factories.items():
            try:
                route = Route(template, compile_template(template), wire(factory(), settings))
            except ConfigurationError as exc:
                logger.error("provider not configured", extra={"route": template, "problem": str(exc)})
                route = Route(template, compile_template(template), None, str(exc))
            self.routes.append(route)

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        path = str(event.get("rawPath") or ((event.get("requestContext") or {}).get("http") or {}).get("path") or "")
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.ingest is None:
                # Counted (NotConfiguredAlarm): the provider retries for a while, then gives up on the event.
                counters.incr(provider_of(route.template), Metric.NOT_CONFIGURED)
                counters.flush()
                return error_response(
                    ServiceUnavailableError(f"{route.template} is not configured", code="not_configured")
                )
            # API Gateway fills pathParameters; a hand-made event (tests, the local stack) may not.
            if params and not event.get("pathParameters"):
                event = {**event, "pathParameters": params}
            return route.ingest.handle(event, context)
        return error_response(RouteNotFoundError(path))
