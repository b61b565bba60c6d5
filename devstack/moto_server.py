"""moto in server mode with request handling serialised.

moto's DynamoDB conditional writes are not atomic under concurrent requests
(2 or 3 winners in about 1% of 20-way races on these machines), while DynamoDB
guarantees per-item atomicity. One lock around moto's dispatcher restores the
guarantee the code relies on, for the tests and the local stack alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No access line per AWS call: a storm makes thousands."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SerializedMotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialised(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            with lock:
                body = b"".join(app(environ, start_response))
            return [body]

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns the output
        self._server: BaseWSGIServer = make_server(host, port, serialised, threaded=True, request_handler=_QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> SerializedMotoServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
