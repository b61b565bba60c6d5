"""The local API Gateway (HTTP API, payload 2.0): routes from the template, authorizers, fakes, /local.

- ``/fake/...``: the fake provider APIs (``/fake/graph/...``, ``/fake/_fake/effects``, ...);
- ``/local/...``: the stack's own endpoints (effects, state, the naive baseline);
- anything else: the template's HttpApi routes, each request turned into the event
  API Gateway builds, the authorizer run first where the route names one.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from devstack.containers import Throttled
from devstack.fakes import FakeProviders, LocalHTTPServer
from devstack.functions_host import FunctionHost
from devstack.lambda_runtime import apigw_event, http_response
from devstack.routes import Route

log = logging.getLogger("devstack.gateway")
access_log = logging.getLogger("devstack.access")

Answer = tuple[int, dict[str, str], bytes]
LocalHandler = Callable[[str, str, dict[str, str], bytes], Answer]


def json_answer(status: int, payload: Any) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(payload, default=str).encode()


class Gateway:
    def __init__(
        self,
        host: str,
        port: int,
        routes: list[Route],
        functions: FunctionHost,
        fakes: FakeProviders,
    ) -> None:
        self.routes = routes
        self.functions = functions
        self.fakes = fakes
        self.local: dict[tuple[str, str], LocalHandler] = {}
        self._server = LocalHTTPServer((host, port), self._handler_class())

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- dispatch ---------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        path = urlsplit(raw_path).path
        if path.startswith("/fake/"):
            reply = self.fakes.dispatch(method, raw_path[len("/fake") :], headers, body)
            status, payload = reply[0], reply[1]
            extra = {"content-type": "application/json", **(dict(reply[2]) if len(reply) > 2 else {})}
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return status, extra, data
        local = self.local.get((method, path))
        if local is not None:
            return local(method, raw_path, headers, body)
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return self._invoke_route(route, params, method, raw_path, headers, body)
        return json_answer(404, {"message": "Not Found"})

    def _invoke_route(
        self, route: Route, params: dict[str, str], method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        event = apigw_event(method, raw_path, body, headers, params or None, route_key=route.route_key)
        if route.authorizer:
            denied = self._authorize(route, event)
            if denied is not None:
                return denied
        try:
            result = self.functions.invoke(route.function, event)
        except Throttled as exc:  # a throttled Lambda integration: 429, which callers retry
            log.warning("%s", exc)
            return json_answer(429, {"message": "Too Many Requests"})
        except Exception:  # API Gateway answers 500 when the integration fails
            log.error("%s failed:\n%s", route.function, traceback.format_exc())
            return json_answer(500, {"message": "Internal Server Error"})
        status, out_headers, data = http_response(result)
        return status, out_headers, data

    def _authorize(self, route: Route, event: dict[str, Any]) -> Answer | None:
        """HTTP API Lambda authorizer (payload 2.0): 401 without the identity, 403 on deny."""
        identity = [event["headers"].get(h) for h in route.identity_headers]
        if route.identity_headers and not all(identity):
            return json_answer(401, {"message": "Unauthorized"})
        auth_event = {
            **event,
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:us-east-1:000000000000:local/$default/{route.method}{route.path}",
            "identitySource": [v for v in identity if v],
        }
        assert route.authorizer is not None
        try:
            result = self.functions.invoke(route.authorizer, auth_event) or {}
        except Throttled as exc:
            log.warning("%s", exc)
            return json_answer(429, {"message": "Too Many Requests"})
        except Exception:
            log.error("authorizer %s failed:\n%s", route.authorizer, traceback.format_exc())
            return json_answer(500, {"message": "Internal Server Error"})
        if route.simple_responses:
            allowed = result.get("isAuthorized") is True
        else:
            statements = (result.get("policyDocument") or {}).get("Statement") or []
            allowed = bool(statements) and all(s.get("Effect") == "Allow" for s in statements)
        if not allowed:
            return json_answer(403, {"message": "Forbidden"})
        event["requestContext"]["authorizer"] = {"lambda": result.get("context") or {}}
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                started = time.perf_counter()
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, out_headers, data = gateway.handle(self.command, self.path, headers, body)
                except Exception:
                    log.error("gateway error:\n%s", traceback.format_exc())
                    status, out_headers, data = json_answer(500, {"message": "Internal Server Error"})
                try:
                    self.send_response(status)
                    for k, v in out_headers.items():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                            self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up; the work is done either way, as on API Gateway
                access_log.info(
                    "%s %s %s %.1fms", self.command, self.path, status, (time.perf_counter() - started) * 1000
                )

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
