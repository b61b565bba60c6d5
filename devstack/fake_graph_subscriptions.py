"""Fake Microsoft Graph, part two: subscriptions, users, the message delta query, throttling.

- ``POST /subscriptions`` validates like Graph: it POSTs ``?validationToken=`` to ``notificationUrl``
  (and ``lifecycleNotificationUrl``) and creates the subscription only when each answers 200 with the
  token as ``text/plain``; an expiry past 10,080 minutes is refused. ``PATCH`` renews, ``POST
  .../reauthorize`` answers 204, ``DELETE`` 204, ``GET`` lists (without clientState, as Graph).
- A subscription whose expiry has passed on the fake's clock is gone (404), and recorded as
  ``graph.subscription.lapsed``: a proof counts them.
- ``GET /users/{id}/mailFolders/{folder}/messages/delta``: a user's messages in the order they were
  stored (``setup:graph``), paged by ``Prefer: odata.maxpagesize`` (default 10) with ``@odata.nextLink``
  and, on the last page, ``@odata.deltaLink``; a delta link returns what was stored after it.
  ``$filter=receivedDateTime ge X`` bounds a first round.
- ``POST /_fake/behaviour {"kind": "graph.throttle", "fail_times": n, "fail_status": 429}`` throttles the
  next ``n`` Graph API calls (``Retry-After`` from ``{"provider": "graph_subscriptions", "retry_after": s}``).
- ``POST /_fake/state {"provider": "graph_subscriptions", ...}``: ``clock`` (seconds added to the fake's
  clock), ``retry_after``, ``remove`` (a subscription id Graph drops, as after ``subscriptionRemoved``).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

MAX_MINUTES = 10080  # Outlook message subscriptions (PROVIDER-FACTS 1)
_API = r"/graph/v1\.0"


def install(fakes: FakeProviders, messages: dict[tuple[str, str], dict[str, Any]]) -> None:
    fake = _FakeSubscriptions(fakes, messages)
    fakes.route("POST", _API + r"/subscriptions")(fake.create)
    fakes.route("GET", _API + r"/subscriptions")(fake.list_subscriptions)
    fakes.route("PATCH", _API + r"/subscriptions/(?P<sid>[^/]+)")(fake.renew)
    fakes.route("POST", _API + r"/subscriptions/(?P<sid>[^/]+)/reauthorize")(fake.reauthorize)
    fakes.route("DELETE", _API + r"/subscriptions/(?P<sid>[^/]+)")(fake.delete)
    fakes.route("GET", _API + r"/users/(?P<user>[^/]+)")(fake.get_user)
    fakes.route("GET", _API + r"/users/(?P<user>[^/]+)/mailFolders/(?P<folder>[^/]+)/messages/delta")(fake.delta)


class _FakeSubscriptions:
    def __init__(self, fakes: FakeProviders, messages: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.fakes = fakes
        self.messages = messages
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, float] = {}
        fakes.state["graph_subscriptions"] = self.subscriptions
        fakes.state["graph_fake_settings"] = self.settings
        fakes.state["setup:graph_subscriptions"] = self.setup

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.settings.get("clock", 0.0), dt.UTC)

    def setup(self, spec: dict[str, Any]) -> dict[str, Any]:
        for name in ("clock", "retry_after"):
            if name in spec:
                self.settings[name] = float(spec[name])
        if "remove" in spec:
            with self.fakes.lock:
                self.subscriptions.pop(str(spec["remove"]), None)
        return {"settings": dict(self.settings)}

    def refused(self, request: FakeRequest, kind: str, key: str) -> Reply | None:
        """The answer when the call must fail, else None. Without the bearer token it is refused (recorded
        as refused, never an effect); throttled or failed by a behaviour it is an attempt that failed."""
        from devstack.fake_graph import unauthorized

        denied = unauthorized(self.fakes, request, kind, key)
        if denied:
            return denied
        call = self.fakes.record(kind, key, request)
        throttled = throttle(self.fakes)
        if throttled:
            self.fakes.failed(call)
            return throttled
        failing = self.fakes.behave(kind)
        if failing:
            self.fakes.failed(call)
            return failing.fail_status, {"error": {"code": "Forbidden", "message": f"{kind} refused"}}
        return None

    def expire(self) -> None:
        """Subscriptions past their expiry are gone, as in Graph; each one that lapsed is recorded."""
        at = self.now()
        with self.fakes.lock:
            lapsed = [s for s in self.subscriptions.values() if _parse(s["expirationDateTime"]) <= at]
            for sub in lapsed:
                del self.subscriptions[sub["id"]]
            self.fakes.calls.extend(_call("graph.subscription.lapsed", sub["resource"]) for sub in lapsed)

    def expiry(self, value: Any) -> dt.datetime | Reply:
        try:
            when = _parse(str(value))
        except ValueError:
            return 400, {"error": {"code": "InvalidRequest", "message": "expirationDateTime is not a date"}}
        if when > self.now() + dt.timedelta(minutes=MAX_MINUTES):
            message = f"Subscription expiration can only be {MAX_MINUTES} minutes in the future."
            return 400, {"error": {"code": "ExtensionError", "message": message}}
        if when <= self.now():
            return 400, {"error": {"code": "InvalidRequest", "message": "expirationDateTime is in the past"}}
        return when

    def create(self, request: FakeRequest) -> Reply:
        spec = request.json() or {}
        answer = self.refused(request, "graph.subscription.create", str(spec.get("resource", "")))
        if answer:
            return answer
        self.expire()
        for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not spec.get(name):
                return 400, {"error": {"code": "InvalidRequest", "message": f"{name} is required"}}
        if len(str(spec.get("clientState") or "")) > 128:
            return 400, {"error": {"code": "InvalidRequest", "message": "clientState is over 128 characters"}}
        when = self.expiry(spec["expirationDateTime"])
        if not isinstance(when, dt.datetime):
            return when
        for url in (spec["notificationUrl"], spec.get("lifecycleNotificationUrl")):
            if url and not _validates(str(url)):
                message = "Subscription validation request failed. Notification endpoint must respond with 200 OK."
                return 400, {"error": {"code": "ValidationError", "message": message}}
        sub = {
            "id": str(uuid.uuid4()),
            "resource": spec["resource"],
            "changeType": spec["changeType"],
            "notificationUrl": spec["notificationUrl"],
            "lifecycleNotificationUrl": spec.get("lifecycleNotificationUrl"),
            "expirationDateTime": _format(when),
            "applicationId": "fake-app",
            "creatorId": "fake-creator",
            "notificationContentType": "application/json",
            "latestSupportedTlsVersion": spec.get("latestSupportedTlsVersion") or "v1_2",
            "clientState": spec.get("clientState"),
        }
        with self.fakes.lock:
            self.subscriptions[sub["id"]] = sub
        return 201, sub

    def list_subscriptions(self, request: FakeRequest) -> Reply:
        answer = self.refused(request, "graph.subscription.list", "")
        if answer:
            return answer
        self.expire()
        with self.fakes.lock:
            value = [{k: v for k, v in s.items() if k != "clientState"} for s in self.subscriptions.values()]
        return 200, {"value": value}

    def renew(self, request: FakeRequest) -> Reply:
        sid = request.match.group("sid")
        answer = self.refused(request, "graph.subscription.renew", sid)
        if answer:
            return answer
        self.expire()
        when = self.expiry((request.json() or {}).get("expirationDateTime"))
        if not isinstance(when, dt.datetime):
            return when
        with self.fakes.lock:
            sub = self.subscriptions.get(sid)
            if sub is None:
                return 404, {"error": {"code": "ResourceNotFound", "message": "The object was not found."}}
            sub["expirationDateTime"] = _format(when)
            shown = {k: v for k, v in sub.items() if k != "clientState"}
        return 200, shown

    def reauthorize(self, request: FakeRequest) -> Reply:
        sid = request.match.group("sid")
        answer = self.refused(request, "graph.subscription.reauthorize", sid)
        if answer:
            return answer
        self.expire()
        with self.fakes.lock:
            found = sid in self.subscriptions
        return (204, b"") if found else (404, {"error": {"code": "ResourceNotFound"}})

    def delete(self, request: FakeRequest) -> Reply:
        sid = request.match.group("sid")
        answer = self.refused(request, "graph.subscription.delete", sid)
        if answer:
            return answer
        with self.fakes.lock:
            gone = self.subscriptions.pop(sid, None)
        return (204, b"") if gone else (404, {"error": {"code": "ResourceNotFound"}})

    def get_user(self, request: FakeRequest) -> Reply:
        user = unquote(request.match.group("user")).lower()
        answer = self.refused(request, "graph.user.get", user)
        if answer:
            return answer
        from devstack.fake_graph import selected

        found = {"id": fake_user_id(user), "userPrincipalName": user, "mail": user}
        return 200, selected(found, request.query.get("$select", [""])[0])

    def delta(self, request: FakeRequest) -> Reply:
        user = unquote(request.match.group("user")).lower()
        answer = self.refused(request, "graph.messages.delta", user)
        if answer:
            return answer
        args = {k: v[0] for k, v in request.query.items()}
        with self.fakes.lock:
            mine = [(mid, m) for (u, mid), m in self.messages.items() if user in (u, fake_user_id(u))]
        if "$skiptoken" in args:
            state = _decode(args["$skiptoken"])
        elif "$deltatoken" in args:  # a delta link keeps the round's $select, as Graph's do
            last = _decode(args["$deltatoken"])
            floor = int(last["ceiling"])
            state = {"floor": floor, "cursor": floor, "ceiling": len(mine), "since": "", "select": last["select"]}
        else:
            since, select = _since(args.get("$filter")), args.get("$select", "")
            state = {"floor": 0, "cursor": 0, "ceiling": len(mine), "since": since, "select": select}
        size = _page_size(request.headers.get("prefer", ""))
        window = [
            (seq, m)
            for seq, (_, m) in enumerate(mine, start=1)
            if state["cursor"] < seq <= state["ceiling"] and str(m.get("receivedDateTime", "")) >= state["since"]
        ]
        page = window[:size]
        # Graph's links are absolute; the fake's are relative to the API root (it sits behind the local
        # gateway's /fake prefix and cannot know its own public URL). The client takes both.
        base = request.path.removeprefix("/graph/v1.0")
        from devstack.fake_graph import selected

        body: dict[str, Any] = {"value": [selected(m, state["select"]) for _, m in page]}
        if len(window) > size:
            token = _encode({**state, "cursor": page[-1][0]})
            body["@odata.nextLink"] = f"{base}?{urlencode({'$skiptoken': token})}"
        else:
            token = _encode({"ceiling": state["ceiling"], "select": state["select"]})
            body["@odata.deltaLink"] = f"{base}?{urlencode({'$deltatoken': token})}"
        return 200, body


@functools.lru_cache(maxsize=4096)  # the delta query asks it of every stored message, on every page
def fake_user_id(user: str) -> str:
    """The fake's Graph id of a user (mailbox address): stable, a GUID as Graph's are."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-graph-user:{user.lower()}"))


def throttle(fakes: FakeProviders) -> Reply | None:
    """A 429 (or the status asked for) with Retry-After, while ``graph.throttle`` is set to fail."""
    throttled = fakes.behave("graph.throttle")
    if not throttled:
        return None
    wait = str(int(fakes.state["graph_fake_settings"].get("retry_after", 7)))
    body = {"error": {"code": "TooManyRequests", "message": "Please retry again later."}}
    return throttled.fail_status, body, {"Retry-After": wait}


def _validates(url: str) -> bool:
    token = f"Validation: Testing client application {uuid.uuid4()}"
    sep = "&" if "?" in url else "?"
    request = urllib.request.Request(f"{url}{sep}validationToken={quote(token)}", data=b"", method="POST")
    request.add_header("Content-Type", "text/plain; charset=utf-8")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            ok = response.status == 200 and response.headers.get_content_type() == "text/plain"
            return bool(ok and response.read().decode() == token)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _page_size(prefer: str) -> int:
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name == "odata.maxpagesize" and value.isdigit():
            return max(1, int(value))
    return 10


def _since(spec: str | None) -> str:
    """``receivedDateTime ge 2026-01-01T00:00:00Z`` -> the bound (ISO strings order as times)."""
    if not spec:
        return ""
    parts = spec.split()
    return parts[2] if len(parts) == 3 and parts[0] == "receivedDateTime" and parts[1] in ("ge", "gt") else ""


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _decode(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.encode())))


def _parse(value: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _format(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _call(kind: str, key: str) -> Any:
    from devstack.fakes import Call

    return Call(kind, key, "", "", "")
