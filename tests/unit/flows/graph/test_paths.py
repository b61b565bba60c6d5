"""Ids the Graph client puts into URLs: one path segment each (core.provider_paths.segment), never a path.

A message id of '..' made ``/users/u/messages/..`` which a client resolves to ``/users/u``: another endpoint,
called with the app's token (issue 16). Refused before any request, as a permanent error (quarantined)."""

from __future__ import annotations

import datetime as dt

import pytest

from exactly_once.core.errors import PermanentEventError
from exactly_once.core.provider_paths import UnsafePathSegmentError
from exactly_once.flows.graph.client import GraphClient
from exactly_once.flows.graph.resync import Resync


class Recorder:
    """Stands in for the HTTP client: records the paths, never connects."""

    worst_attempt_s = 1.0

    def __init__(self) -> None:
        self.paths: list[str] = []

    def request(self, method, url, **kwargs):
        self.paths.append(url)
        raise AssertionError("no request may be made")


class Tokens:
    def token(self) -> str:
        return "t"


def client() -> tuple[GraphClient, Recorder]:
    http = Recorder()
    return GraphClient("https://graph.test/v1.0", Tokens(), http), http  # type: ignore[arg-type]


@pytest.mark.parametrize(("user", "message"), [("u", ".."), ("u", "."), ("u", ""), ("..", "m"), (".", "m")])
def test_a_dot_segment_id_is_refused_before_any_request_and_quarantined(user, message):
    graph, http = client()
    with pytest.raises(UnsafePathSegmentError) as caught:
        graph.get_message(user, message)
    assert isinstance(caught.value, PermanentEventError)  # the worker quarantines it, no retries
    assert http.paths == []


def test_the_first_delta_link_takes_the_mailbox_and_the_folder_as_one_segment_each():
    resync = Resync(client()[0], None, lambda: dt.datetime(2026, 12, 1, tzinfo=dt.UTC))  # type: ignore[arg-type]
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    link = resync._first_link("ops@example.com", "in/box", now)
    assert link.startswith("/users/ops@example.com/mailFolders/in%2Fbox/messages/delta?")
    for folder in ("..", ".", ""):
        with pytest.raises(UnsafePathSegmentError):
            resync._first_link("ops@example.com", folder, now)
