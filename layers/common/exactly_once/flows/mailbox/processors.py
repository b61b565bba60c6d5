"""Pluggable mail processors: the real work done with each new mail, once.

A processor is any object with ``process(conn, mail) -> Mapping | None``. ``MAILBOX_PROCESSOR``
(``"package.module:attr"``) names one: ``attr`` may be such an object, a class or a factory taking
no arguments; it is loaded once, when the job worker starts (a wrong name stops the function at start).
Without one, ``RecordOnly`` records each mail and does nothing else.

The contract (docs/mailbox-jobs.md):

* ``process`` runs inside the transaction that records the mail in ``processed_mails``: write the
  effect with ``conn`` (no commit, no ``autocommit``) and it commits with the record, or not at all.
  It is called again only for a mail whose earlier call raised (its writes rolled back).
* What it returns (a small JSON-able mapping) goes into the mail's ``event_log`` row.
* Raise ``MailRejectedError`` for a mail no retry will help (malformed, not understood): it goes to
  quarantine at once. Any other exception is a failure of this attempt: the mail is retried by the
  user's next jobs, up to ``MAILBOX_MAIL_MAX_FAILURES`` times, then quarantined; the other mails
  go on either way.
* Calls to other systems belong behind an outbox row written here (e.g. ``send_queue``): a call made
  from ``process`` is not undone when the transaction rolls back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol, cast, runtime_checkable

import psycopg

from exactly_once.core.errors import ExactlyOnceError
from exactly_once.core.plugins import load_plugin
from exactly_once.flows.mailbox.message import ParsedMail

SETTING = "MAILBOX_PROCESSOR"


class MailRejectedError(ExactlyOnceError):
    """The processor will never accept this mail: quarantine it now, without retries."""


@runtime_checkable
class MailProcessor(Protocol):
    def process(self, conn: psycopg.Connection[Any], mail: ParsedMail) -> Mapping[str, Any] | None:
        """Do the mail's work with ``conn`` (inside the caller's transaction); return what to log, or None."""


class RecordOnly:
    """The default: the mail is recorded (``processed_mails``, ``event_log``) and nothing else happens."""

    def process(self, conn: psycopg.Connection[Any], mail: ParsedMail) -> Mapping[str, Any] | None:
        return None


def load_processor(spec: str | None = None) -> MailProcessor:
    """The processor named by ``spec`` (default: ``MAILBOX_PROCESSOR``), else ``RecordOnly``."""
    spec = spec if spec is not None else os.environ.get(SETTING, "")
    if not spec:
        return RecordOnly()
    return cast(MailProcessor, load_plugin(SETTING, spec, MailProcessor, "process(conn, mail)"))
