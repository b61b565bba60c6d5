"""A TCP proxy in front of an IMAP server that counts connections per user, at the wire.

Each client connection is attributed to the user named in its plaintext ``LOGIN``
command; the proxy keeps how many connections each user has open at once and the
highest such number seen. It measures what the server sees, independent of the
code under test.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Self

_LOGIN = re.compile(rb"^\S+ LOGIN \"?([^\s\"]+)\"?", re.IGNORECASE | re.MULTILINE)


class TcpListener:
    """Accepts connections on ``host``:``port`` (0: any free port) and serves each on a thread of its own."""

    host: str
    port: int
    _server: socket.socket | None
    backlog = 64

    def start(self) -> Self:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((self.host, self.port))
        self._server.listen(self.backlog)
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


def connect_upstream(upstream: tuple[str, int], client: socket.socket) -> socket.socket | None:
    """The proxied server for ``client``; None (and ``client`` closed) when it does not answer."""
    try:
        return socket.create_connection(upstream, timeout=30)
    except OSError:
        client.close()
        return None


def hang_up(*sockets: socket.socket) -> None:
    """Shut both directions of each socket, whatever state it is in (the other pump then ends)."""
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@dataclass
class CountingImapProxy(TcpListener):
    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    port: int = 0
    open_now: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_at_once: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    logins: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None

    def reset(self) -> None:
        with self._lock:
            self.max_at_once.clear()
            self.logins.clear()

    def _serve(self, client: socket.socket) -> None:
        upstream = connect_upstream(self.upstream, client)
        if upstream is None:
            return
        user: list[str] = []
        done = threading.Event()

        def down() -> None:  # server -> client
            self._pump(upstream, client)
            done.set()

        threading.Thread(target=down, daemon=True).start()
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if not user and (match := _LOGIN.search(data)):
                    user.append(match.group(1).decode())
                    with self._lock:
                        self.open_now[user[0]] += 1
                        self.logins[user[0]] += 1
                        self.max_at_once[user[0]] = max(self.max_at_once[user[0]], self.open_now[user[0]])
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            hang_up(client, upstream)
            done.wait(5)
            client.close()
            upstream.close()
            if user:
                with self._lock:
                    self.open_now[user[0]] -= 1

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
