"""Powertools Logger and EMF metrics, with the one metric catalogue of the bundle.

Each provider gets its own EphemeralMetrics (dimension ``provider``), flushed at
the end of an invocation, so one worker that handles several providers still
reports each under its own dimension. No message bodies or secrets are logged.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from exactly_once.core.display import json_text

NAMESPACE = "ExactlyOnce"

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Log lines carry provider text (ids, reasons): json_text escapes what a terminal would obey (issue 16).
logger = Logger(
    service="exactly-once", json_serializer=functools.partial(json_text, default=str, separators=(",", ":"))
)


class Metric:
    """The catalogue (documented in the README's "Metric catalogue": add a row there with a new name)."""

    DELIVERIES = "DeliveriesReceived"
    ACCEPTED = "EventsAccepted"
    DUP_INGEST = "DuplicatesStoppedIngest"  # DynamoDB idempotency record
    DUP_QUEUE = "DuplicatesStoppedQueue"  # SQS FIFO dedup id / message already handled
    DUP_DATABASE = "DuplicatesStoppedDatabase"  # Postgres claim or unique constraint
    CONSTRAINT_RECOVERED = "ConstraintViolationsRecovered"
    QUARANTINED = "Quarantined"
    SIGNATURE_FAILURES = "SignatureFailures"
    REJECTED = "RequestsRejected"
    OPERATOR_DENIED = "OperatorRequestsDenied"  # the operator routes' authorizer said no (provider = operator)
    NOT_CONFIGURED = "NotConfigured"  # a 503 not_configured: a provider's secret or a setting is missing
    RETENTION_DELETED = "RetentionRowsDeleted"  # rows past their retention window, deleted (ops/retention.py)
    RETENTION_REDACTED = "RetentionRowsRedacted"  # settled quarantine rows whose provider body was removed
    PROVIDER_RETRIES = "ProviderRetriesSeen"  # deliveries the provider marked as a retry (Slack)
    LIFECYCLE = "LifecycleEvents"
    EFFECTS = "EffectsApplied"
    RECLAIMED = "StaleClaimsReclaimed"  # claims a reaper took back from a dead or late worker (per flow)
    REAPERS_FAILED = "ReapersFailed"  # a reaper raised; the others still ran (reaper.run_all)
    SENDS_UNKNOWN = "SendsUnknown"
    STUCK_ROWS = "StuckRows"
    RETRIED = "EffectsRetried"
    STALE_REJECTED = "StaleWritesRejected"  # a late worker's fenced write matched no current claim
    REPLIES_ENQUEUED = "RepliesEnqueued"  # WhatsApp: bot replies put in the send queue
    STATUSES_APPLIED = "StatusesApplied"  # delivery statuses that moved a message forward
    STATUSES_STALE = "StatusesStale"  # late or repeated statuses that changed nothing
    FIELD_UPDATES = "FieldUpdatesRecorded"  # WhatsApp: routine webhook fields (template, account, quality) recorded
    LLM_CALLS = "LlmCalls"  # LiveKit: model calls made (answered or failed)
    LLM_TOKENS_IN = "LlmTokensIn"  # LiveKit: prompt tokens of answered calls (usage.prompt_tokens)
    LLM_TOKENS_OUT = "LlmTokensOut"  # LiveKit: completion tokens of answered calls (usage.completion_tokens)
    LLM_CALLS_PER_ROOM = "LlmCallsPerRoom"  # LiveKit: per completed analysis, the model calls it took
    LATE_FEEDBACK_REDRIVEN = "LateFeedbackRedriven"  # LiveKit: rows created after their room finished, re-driven
    LATE_FEEDBACK_ROWS = "LateFeedbackRows"  # gauge: rows still initiated 10 minutes after their room finished
    SCHEDULE_FAILURES = "MailboxScheduleFailures"  # a tick could not make one user's job; the others still ran
    DUPLICATE_SHARE = "DuplicateShare"  # percent of a webhook POST's events that ingest found already delivered
    RECIPIENT_REPEATS = "RecipientRepeats"  # a send reached a recipient another send reached within the hour
    WINDOW_CLOSED = "WhatsAppWindowClosed"  # a free-form send outside the 24-hour window went to review
    WINDOW_TEMPLATES = "WhatsAppWindowTemplates"  # the re-engagement template went instead of a late free-form send
    FAILED = "EventsFailed"  # a processor raised: SQS retries the message, then the DLQ keeps it
    REPLAYED = "EventsReplayed"  # operator replays the worker received (exactly-once quarantine replay)
    OPEN_QUARANTINE = "OpenQuarantine"  # gauge: quarantine rows awaiting an operator (ops_gauges, every minute)
    GRAPH_SUBSCRIPTION_FAILURES = "GraphSubscriptionFailures"  # a create/renew/delete Graph refused or left unanswered
    GRAPH_AT_RISK = "GraphSubscriptionsAtRisk"  # gauge: watched mailboxes without a subscription lasting 24 h more
    GRAPH_RESYNCED = "GraphMailsResynced"  # mails a delta resync queued (duplicates of live ones included)
    GRAPH_THROTTLED = "GraphThrottled"  # a Graph 429/503: the event went back to the queue for Retry-After
    GRAPH_UNMANAGED = "GraphUnmanagedNotifications"  # a subscription or mailbox the bundle does not manage: quarantined


class Counters:
    """Counts per provider during one invocation; ``flush`` emits one EMF blob per provider.

    Locked: a batch's dedup threads count, and the local stack runs every function's invocations
    in one process, where one flushing while another counted raised "dictionary changed size during
    iteration" (a 500 found by the soak, bench/soak_bench.py).
    """

    def __init__(self, service: str = "exactly-once") -> None:
        self._service = service
        self._by_provider: dict[str, EphemeralMetrics] = {}
        self._lock = threading.Lock()

    def incr(self, provider: str, name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
        with self._lock:
            metrics = self._by_provider.get(provider)
            if metrics is None:
                metrics = EphemeralMetrics(namespace=NAMESPACE, service=self._service)
                metrics.add_dimension(name="provider", value=provider)
                self._by_provider[provider] = metrics
            metrics.add_metric(name=name, unit=unit, value=value)

    def flush(self) -> None:
        with self._lock:
            taken = list(self._by_provider.values())
            self._by_provider.clear()
        for metrics in taken:  # out of the map: a count made meanwhile starts a new blob
            metrics.flush_metrics()


counters = Counters()


def flushes_metrics(entry_point: Callable[_P, _R]) -> Callable[_P, _R]:
    """Emit the counted metrics when ``entry_point`` returns or raises (once per invocation).

    For Lambda handlers and the library entry points they call (under ``inject_lambda_context``).
    """

    @functools.wraps(entry_point)
    def flushing(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return entry_point(*args, **kwargs)
        finally:
            counters.flush()

    return flushing
