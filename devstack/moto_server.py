"""moto in server mode with request handling serialised.

moto's DynamoDB conditional writes are not atomic under concurrent requests
(2 or 3 winners in about 1% of 20-way races on these machines), while DynamoDB
guarantees per-item atomicity. One lock around moto's dispatcher restores the
guarantee the code relies on, for the tests and the local stack alike.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No access line per AWS call: a storm makes thousands."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


PEEK_PATH = "/_devstack/sqs-messages"
STATS_PATH = "/_devstack/stats"


def queued_messages(account: str = "123456789012", region: str = "us-east-1") -> dict[str, list[dict[str, Any]]]:
    """Every message still in a queue, by queue name, without receiving it (SQS has no such API).

    The local stack saves these at shutdown so a restart keeps what was queued.
    """
    from moto.sqs.models import sqs_backends

    backend = sqs_backends[account][region]
    return {
        name: [
            {"body": m.body, "group": m.group_id, "dedup": m.deduplication_id}
            for m in list(queue._messages)  # moto keeps them here; there is no public peek
        ]
        for name, queue in backend.queues.items()
    }


def _fast_sqs_clock() -> None:
    """moto's SQS asks every queued message whether it is visible, on every send and receive, and
    each answer builds datetimes (about 10 us). A queue of a few hundred messages then costs 0.3 s
    per SendMessageBatch. The same epoch milliseconds from ``time.time()`` cost 100 times less;
    nothing else changes."""
    import moto.sqs.models as sqs_models
    from moto.core.utils import unix_time_millis

    def fast(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else unix_time_millis(dt)

    sqs_models.unix_time_millis = fast  # type: ignore[attr-defined]


class SerializedMotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        _fast_sqs_clock()

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()
        # Calls served and seconds spent holding the lock: how busy the embedded AWS is (GET /local/state).
        self.stats: dict[str, float] = {"calls": 0, "busy_seconds": 0.0}

        def serialised(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == STATS_PATH:
                start_response("200 OK", [("Content-Type", "application/json")])
                return [json.dumps(self.stats).encode()]
            if environ.get("PATH_INFO") == PEEK_PATH:
                with lock:
                    data = json.dumps(queued_messages()).encode()
                start_response("200 OK", [("Content-Type", "application/json")])
                return [data]
            with lock:
                started = time.perf_counter()
                body = b"".join(app(environ, start_response))
                self.stats["calls"] += 1
                self.stats["busy_seconds"] += time.perf_counter() - started
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
