"""A TCP proxy in front of an IMAP server that moves each FETCH response's UID after its literals.

dovecot always answers ``UID FETCH`` with the UID first (``* 3 FETCH (UID 7 BODY[] {120}``...). RFC 3501
lets a server put the items in any order, and a server that sends the UID after the literal
(``* 3 FETCH (BODY[] {120} ... UID 7)``) must be read the same. The proxy rewrites dovecot's answers
into that order, at the wire, and counts how many it rewrote, so a test knows the client saw it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

from devstack.imap_proxy import TcpListener, connect_upstream, hang_up

_FETCH = re.compile(rb"^\* \d+ FETCH \(")
_UID = re.compile(rb"(?<=[( ])UID (\d+) ?")
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def uid_after_literals(response: bytes) -> bytes:
    """One untagged response (its lines and literals): the UID moved to the end, if it has literals."""
    first, sep, rest = response.partition(b"\r\n")
    if not _FETCH.match(first) or not rest or not (match := _UID.search(first)):
        return response
    first = first[: match.start()] + first[match.end() :]
    assert rest.endswith(b")\r\n"), rest[-20:]
    return first + sep + rest[: -len(b")\r\n")] + b" UID " + match.group(1) + b")\r\n"


@dataclass
class ReorderingImapProxy(TcpListener):
    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    port: int = 0
    reordered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None
    backlog = 16

    def _serve(self, client: socket.socket) -> None:
        upstream = connect_upstream(self.upstream, client)
        if upstream is None:
            return
        threading.Thread(target=self._down, args=(upstream.makefile("rb"), client), daemon=True).start()
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            hang_up(client, upstream)
            client.close()
            upstream.close()

    def _down(self, src: BinaryIO, dst: socket.socket) -> None:
        """Server -> client, one whole response (its literals included) at a time."""
        try:
            while line := src.readline():
                response = line
                while match := _LITERAL.search(line):
                    response += src.read(int(match.group(1)))
                    line = src.readline()
                    response += line
                rewritten = uid_after_literals(response)
                if rewritten != response:
                    with self._lock:
                        self.reordered += 1
                dst.sendall(rewritten)
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
