"""Graph's subscription API and the settings the bundle's subscriptions are made with.

Calls only; what to call and when is the manager's (``manager.py``). Every call is recorded by
Graph as the app's: create (``POST /subscriptions``, which makes Graph validate both URLs first),
renew (``PATCH``), reauthorize, delete, list, and the one user lookup a mailbox needs (notifications
name a mailbox by its user id, the configuration by its address).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from exactly_once.core.errors import ConfigurationError, ProviderCallError
from exactly_once.core.provider_paths import segment
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.flows.graph.client import GraphClient

#: Outlook message subscriptions last at most 10,080 minutes; ask a little less (clock skew).
MAX_MINUTES = 10080
_SLACK_MINUTES = 30


def client_state_id(client_state: str) -> str:
    """A short fingerprint of a clientState: which secret a subscription was made with, never the secret."""
    return "cs-" + hashlib.sha256(b"exactly-once graph clientState\x00" + client_state.encode()).hexdigest()[:12]


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_time(value: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class SubscriptionSettings:
    """How the bundle's subscriptions are made (read once per run)."""

    notification_url: str
    client_state: str
    minutes: int = MAX_MINUTES - _SLACK_MINUTES
    renew_margin: dt.timedelta = dt.timedelta(hours=72)

    @property
    def client_state_id(self) -> str:
        return client_state_id(self.client_state)

    @classmethod
    def from_env(cls) -> SubscriptionSettings:
        url = os.environ.get("GRAPH_NOTIFICATION_URL", "")
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("GRAPH_NOTIFICATION_URL must be the deployed /webhooks/graph URL")
        minutes = min(env_int("GRAPH_SUBSCRIPTION_MINUTES", MAX_MINUTES - _SLACK_MINUTES), MAX_MINUTES)
        margin = dt.timedelta(hours=env_int("GRAPH_RENEW_MARGIN_HOURS", 72))
        return cls(url, get_secret("GRAPH_CLIENT_STATE"), minutes, margin)


def resource_of(mailbox: str, folder: str) -> str:
    return f"users/{mailbox}/mailFolders('{folder}')/messages"


@dataclass(frozen=True)
class Created:
    subscription_id: str
    expires_at: dt.datetime


class SubscriptionsApi:
    def __init__(self, graph: GraphClient) -> None:
        self._graph = graph

    def create(self, settings: SubscriptionSettings, resource: str, now: dt.datetime) -> Created:
        """A new subscription; not retried on a read timeout (its outcome is unknown: the manager's
        next claim lists and deletes what it does not know)."""
        body = {
            "changeType": "created",
            "notificationUrl": settings.notification_url,
            "lifecycleNotificationUrl": settings.notification_url,
            "resource": resource,
            "expirationDateTime": iso(now + dt.timedelta(minutes=settings.minutes)),
            "clientState": settings.client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        data = self._graph.call("POST", "/subscriptions", body, idempotent=False).json()
        return Created(str(data["id"]), parse_time(str(data["expirationDateTime"])))

    def renew(self, subscription_id: str, settings: SubscriptionSettings, now: dt.datetime) -> dt.datetime:
        body = {"expirationDateTime": iso(now + dt.timedelta(minutes=settings.minutes))}
        data = self._graph.call("PATCH", f"/subscriptions/{segment(subscription_id)}", body).json()
        return parse_time(str(data["expirationDateTime"]))

    def reauthorize(self, subscription_id: str) -> None:
        self._graph.call("POST", f"/subscriptions/{segment(subscription_id)}/reauthorize")

    def delete(self, subscription_id: str) -> None:
        """Delete; one already gone counts as deleted."""
        try:
            self._graph.call("DELETE", f"/subscriptions/{segment(subscription_id)}")
        except ProviderCallError as exc:
            if exc.status != 404:
                raise

    def list(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        link: str | None = "/subscriptions"
        while link:
            data = self._graph.call("GET", link).json()
            found.extend(item for item in data.get("value") or [] if isinstance(item, dict))
            link = data.get("@odata.nextLink")
        return found

    def user_id(self, mailbox: str) -> str:
        return str(self._graph.call("GET", f"/users/{segment(mailbox, safe='@')}?$select=id").json()["id"])
