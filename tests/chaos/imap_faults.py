"""An IMAP proxy for the mailbox chaos storm: it hangs up or resets connections in the middle of a FETCH,
at a seeded rate, and records every user's sessions at the wire, so the storm can show that no user ever had
two at once.

A session is a client connection, attributed to the user of its plaintext ``LOGIN``; it is open from that
LOGIN until the proxy sees the client's end of it close (a logout, a hang-up, a SIGKILLed worker's socket).
When a client sends a ``FETCH`` and the draw says so, the proxy forwards it, passes on half of the server's
first answer to it, and then either hangs up (FIN both ways: the client reads EOF mid-literal) or resets the
client's connection (``SO_LINGER`` 0: an RST), as a server restart or a dropping NAT would. The draw is a hash
of the seed, the user and the number of the user's FETCH, as ``exactly_once.core.faults`` draws: a seed replays
the same faults per user, whatever the interleaving of the users.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from devstack.imap_proxy import TcpListener, connect_upstream, hang_up

_LOGIN = re.compile(rb"^\S+ LOGIN \"?([^\s\"]+)\"?", re.IGNORECASE | re.MULTILINE)
_FETCH = re.compile(rb"^\S+ (?:UID )?FETCH ", re.IGNORECASE | re.MULTILINE)
KINDS = ("hangup", "reset")


@dataclass
class _Session:
    user: str = ""
    fault: str = ""  # the fault this connection is doomed to, once a FETCH drew one
    opened: float = 0.0


@dataclass
class FaultyImapProxy(TcpListener):
    upstream: tuple[str, int]
    seed: int = 0
    rate: float = 0.0  # per FETCH command; 0 outside the storm
    host: str = "127.0.0.1"
    port: int = 0
    open_now: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_at_once: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    logins: Counter[str] = field(default_factory=Counter)
    overlaps: list[tuple[str, float]] = field(default_factory=list)  # (user, when): a second session opened
    injected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None

    fetches: Counter[str] = field(default_factory=Counter)  # per user: the FETCH commands seen

    def _draw(self, user: str) -> str:
        """The fault of this user's next FETCH, if any (the login's ``.<suffix>`` is not part of the user)."""
        key = user.rpartition(".")[0] or user
        with self._lock:
            n = self.fetches[key]
            self.fetches[key] += 1
        digest = hashlib.blake2b(f"{self.seed}:{key}:{n}".encode(), digest_size=8).digest()
        if int.from_bytes(digest[:6]) / 2**48 >= self.rate:
            return ""
        return KINDS[digest[7] % len(KINDS)]

    def _opened(self, session: _Session, user: str) -> None:
        with self._lock:
            session.user, session.opened = user, time.monotonic()
            self.open_now[user] += 1
            self.logins[user] += 1
            self.max_at_once[user] = max(self.max_at_once[user], self.open_now[user])
            if self.open_now[user] > 1:
                self.overlaps.append((user, session.opened))

    def _closed(self, session: _Session) -> None:
        if session.user:
            with self._lock:
                self.open_now[session.user] -= 1
                session.user = ""

    def _serve(self, client: socket.socket) -> None:
        upstream = connect_upstream(self.upstream, client)
        if upstream is None:
            return
        session = _Session()
        down = threading.Thread(target=self._down, args=(upstream, client, session), daemon=True)
        down.start()
        try:
            while data := client.recv(65536):
                if not session.user and (login := _LOGIN.search(data)):
                    self._opened(session, login.group(1).decode())
                if session.user and not session.fault and _FETCH.search(data):
                    session.fault = self._draw(session.user)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._closed(session)  # the client's end closed: its session is over, whatever the server does next
            if session.fault == "reset":
                client.close()  # SO_LINGER 0 (set by _down): an RST, not a FIN
                hang_up(upstream)
            else:
                hang_up(client, upstream)
                client.close()
            down.join(5)
            upstream.close()

    def _down(self, src: socket.socket, dst: socket.socket, session: _Session) -> None:
        """Server -> client; a doomed connection gets half of the first answer after its FETCH, then dies."""
        try:
            while data := src.recv(65536):
                if session.fault and self._fire(data, dst, session.fault):
                    return
                dst.sendall(data)
        except OSError:
            pass
        hang_up(dst)

    def _fire(self, data: bytes, dst: socket.socket, kind: str) -> bool:
        dst.sendall(data[: max(1, len(data) // 2)])
        with self._lock:
            self.injected[f"imap {kind}"] += 1
        if kind == "reset":
            dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            dst.shutdown(socket.SHUT_RD)  # wakes the client pump, which closes the socket: the RST goes out
        else:
            hang_up(dst)
        return True
