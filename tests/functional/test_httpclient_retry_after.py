"""HttpClient and a provider's Retry-After: short waits are slept and retried, a wait over the cap
is not slept: the answer surfaces at once with its retry_after, for the caller to reschedule."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exactly_once.core.errors import ProviderCallError
from exactly_once.core.outbound_http import MAX_RETRY_AFTER_SECONDS, HttpClient


class _Server:
    def __init__(self) -> None:
        self.retry_after = "1"
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.hits += 1
                body = b'{"status": 429, "type": "errors/too_many_requests"}'
                self.send_response(429)
                self.send_header("Retry-After", server.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()


def _timed(fn) -> tuple[float, BaseException | None]:
    """Run fn in a thread, give up after 5 s (an uncapped Retry-After would sleep minutes)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed back to the test
            failure.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "the client slept on a Retry-After over the cap"
    return time.monotonic() - started, failure[0] if failure else None


@pytest.mark.parametrize("header", ["120", "http-date"])
def test_a_retry_after_over_the_cap_is_not_slept_and_surfaces_at_once(server, header):
    server.retry_after = formatdate(time.time() + 3600, usegmt=True) if header == "http-date" else header
    client = HttpClient(server.url, retries=2)
    elapsed, error = _timed(lambda: client.request("GET", "/api/v1/chats/c/messages"))
    assert elapsed < 2
    assert isinstance(error, ProviderCallError) and error.status == 429
    assert error.retry_after is not None and error.retry_after > MAX_RETRY_AFTER_SECONDS
    assert server.hits == 1  # no retry: the caller reschedules, or asks again on its next run


def test_a_short_retry_after_is_slept_and_retried(server):
    server.retry_after = "1"
    client = HttpClient(server.url, retries=1)
    elapsed, error = _timed(lambda: client.request("GET", "/x"))
    assert isinstance(error, ProviderCallError) and error.status == 429 and error.retry_after == 1.0
    assert server.hits == 2 and 0.9 <= elapsed < 4


def test_a_send_is_never_retried_and_carries_the_providers_wait(server):
    server.retry_after = "600"
    client = HttpClient(server.url, retries=2)
    elapsed, error = _timed(lambda: client.request("POST", "/send", fields={"text": "hi"}, idempotent=False))
    assert isinstance(error, ProviderCallError) and error.retry_after == 600.0
    assert server.hits == 1 and elapsed < 2
