"""The deployed ``/webhooks/graph`` for the fake Graph to validate: an HTTP server over the in-process handler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from devstack.fakes import LocalHTTPServer
from tests.harness import Stack


@contextmanager
def notification_endpoint(stack: Stack, monkeypatch: Any) -> Iterator[str]:
    """Serve GraphIngestFunction over HTTP; GRAPH_NOTIFICATION_URL points at it while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            data = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = stack.invoke_http("GraphIngestFunction", "POST", f"http://127.0.0.1{self.path}", data, headers)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = LocalHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/graph"
    monkeypatch.setenv("GRAPH_NOTIFICATION_URL", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
