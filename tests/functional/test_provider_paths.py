"""Ids in provider URLs and redirects: a chat id of '..' never reaches another endpoint, a POST /sends with one
is a 400, and a provider's redirect to another host is not followed with our credentials.
Real HTTP on loopback: recording servers count every request they receive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exactly_once.core.errors import ProviderCallError
from exactly_once.core.outbound_http import HttpClient
from exactly_once.core.provider_paths import UnsafePathSegmentError
from exactly_once.sends.unipile_api import UnipileClient
from exactly_once.sends.whatsapp_api import WhatsAppClient
from tests.send_support import post_send, send_body


class _Recorder:
    """A server that records (method, path, headers) of every request; answers ``answer`` (status, headers)."""

    def __init__(self, answer: tuple[int, dict[str, str]] = (200, {})) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.answer = answer
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                recorder.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers = recorder.answer
                self.send_response(status)
                for name, value in {**headers, "content-type": "application/json"}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b'{"object": "MessageSent", "message_id": "m1"}')

            do_GET = do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorder() -> Iterator[Any]:
    made: list[_Recorder] = []

    def make(answer: tuple[int, dict[str, str]] = (200, {})) -> _Recorder:
        made.append(_Recorder(answer))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.mark.parametrize("chat_id", ["..", ".", ""])
def test_a_dot_segment_chat_id_never_leaves_the_process(recorder, chat_id):
    unipile = recorder()
    client = UnipileClient(unipile.url, "unipile-key")
    with pytest.raises(UnsafePathSegmentError):
        client.send_message(chat_id, "hello")
    assert unipile.requests == []  # before: POST /api/v1/chats/../messages arrived as /api/v1/messages


def test_a_dot_segment_phone_number_id_never_leaves_the_process(recorder):
    graph = recorder()
    client = WhatsAppClient(graph.url, "wa-token")
    with pytest.raises(UnsafePathSegmentError):
        client.send("..", "4915112345678", {"type": "text", "text": {"body": "hello"}})
    assert graph.requests == []


def test_an_id_with_slashes_and_dots_stays_one_segment(recorder):
    unipile = recorder()
    UnipileClient(unipile.url, "unipile-key").send_message("../../x/..y", "hello")
    assert [path for _, path, _ in unipile.requests] == ["/api/v1/chats/..%2F..%2Fx%2F..y/messages"]


def test_a_redirect_to_another_host_is_not_followed_with_the_credentials(recorder):
    # GIVEN a provider endpoint that redirects to a host of someone else's choosing
    elsewhere = recorder()
    provider = recorder((307, {"location": f"{elsewhere.url}/collect"}))
    client = HttpClient(provider.url, headers={"X-API-KEY": "unipile-key", "Authorization": "Bearer t"})
    # WHEN we call it (an idempotent GET, the kind urllib3 would follow)
    with pytest.raises(ProviderCallError) as refused:
        client.request("GET", "/api/v1/chats/c1/messages")
    # THEN the redirect is an error and the other host heard nothing (urllib3 kept X-API-KEY on redirects)
    assert refused.value.status == 307
    assert len(provider.requests) == 1
    assert elsewhere.requests == []


@pytest.mark.parametrize(("field", "value"), [("recipient", ".."), ("recipient", "."), ("sender_account", "..")])
def test_post_sends_with_a_dot_segment_id_is_a_400_and_queues_nothing(stack, db, field, value):
    body = send_body(**{"chat": "chat_1", "sender": "acc_1"}) | {field: value}
    answer = post_send(stack, body, key=f"dot-{field}-{value}")
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_id"
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 0
