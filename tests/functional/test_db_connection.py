"""The Postgres connection: TLS verified against the RDS CAs on AWS (real libpq against a loopback endpoint that
speaks Postgres' SSLRequest), and the session timeouts that stop a hung query holding its locks (real Postgres).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509

from exactly_once.core import db
from exactly_once.core.errors import DatabaseUnavailableError
from tests.tls_support import TestCA

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104


@dataclass
class PostgresFrontDoor:
    """Answers libpq's SSLRequest with 'S' and a TLS handshake (``cert``), or with 'N' (no TLS offered).

    Counts what matters: TLS handshakes completed and startup packets received in plaintext (which carry
    the user name, and are followed by the password exchange).
    """

    cert: tuple[Path, Path] | None
    handshakes: int = 0
    plaintext_startups: int = 0
    _sock: socket.socket = field(default_factory=socket.socket)

    def start(self) -> PostgresFrontDoor:
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ssl.SSLError, struct.error):
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        while True:
            _length, code = struct.unpack("!II", conn.recv(8, socket.MSG_WAITALL))
            if code == GSS_REQUEST:
                conn.sendall(b"N")
            elif code == SSL_REQUEST and self.cert is not None:
                conn.sendall(b"S")
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*self.cert)
                with context.wrap_socket(conn, server_side=True):
                    self.handshakes += 1
                return
            elif code == SSL_REQUEST:
                conn.sendall(b"N")
            else:  # a StartupMessage (protocol 3.0): in plaintext
                self.plaintext_startups += 1
                return

    def stop(self) -> None:
        self._sock.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def front_door(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[PostgresFrontDoor] = []

    def make(cert: tuple[Path, Path] | None) -> PostgresFrontDoor:
        made.append(PostgresFrontDoor(cert).start())
        return made[-1]

    yield make
    for server in made:
        server.stop()


def _secret(port: int) -> dict[str, Any]:
    return {"username": "app", "password": "p@ss/word:1", "host": "127.0.0.1", "port": port, "dbname": "app"}


# Starfield Services Root G2 (an RDS Proxy root, valid to 2037) has serial number 0, which cryptography warns about.
@pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning")
def test_the_url_from_the_rds_secret_verifies_the_server_against_the_shipped_rds_bundle():
    url = db.url_from_secret(_secret(5432))
    info = psycopg.conninfo.conninfo_to_dict(url)
    assert info["sslmode"] == "verify-full"
    assert Path(str(info["sslrootcert"])) == db.RDS_CA_BUNDLE
    assert info["password"] == "p@ss/word:1"  # quoted in the URL, intact for libpq
    # AND the bundle shipped in the layer holds Amazon's RDS roots and RDS Proxy's, every one a CA
    certs = x509.load_pem_x509_certificates(db.RDS_CA_BUNDLE.read_bytes())
    subjects = {c.subject.rfc4514_string() for c in certs}
    assert any("Amazon RDS us-east-1 Root CA RSA2048 G1" in s for s in subjects)
    assert any(s.startswith("CN=Amazon Root CA 1") for s in subjects)
    assert all(c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca for c in certs)


def test_a_server_with_a_certificate_outside_the_rds_bundle_is_refused(ca, front_door):
    # GIVEN an endpoint posing as the database with a certificate of another CA, valid for its name
    issued = ca.issue("127.0.0.1", "localhost")
    server = front_door((issued.cert, issued.key))
    # WHEN the function connects with the URL from the RDS secret
    with pytest.raises(DatabaseUnavailableError) as refused:
        db.connect(db.url_from_secret(_secret(server.port)))
    # THEN libpq refused the certificate: no startup packet (user name) and no password went out
    assert "certificate verify failed" in str(refused.value.cause)
    assert server.plaintext_startups == 0


def test_a_server_that_offers_no_tls_is_refused_not_used_in_plaintext(front_door):
    # GIVEN an endpoint answering the SSLRequest with 'N' (sslmode=prefer would carry on in plaintext)
    server = front_door(None)
    with pytest.raises(DatabaseUnavailableError) as refused:
        db.connect(db.url_from_secret(_secret(server.port)))
    assert "SSL" in str(refused.value.cause)
    assert server.plaintext_startups == 0


def test_every_connection_starts_with_the_session_timeouts(database_url, monkeypatch):
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "1500")
    with db.connect(database_url) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        }
    assert shown == {"statement_timeout": "20s", "lock_timeout": "1500ms", "idle_in_transaction_session_timeout": "30s"}


def test_a_lock_wait_ends_at_lock_timeout_instead_of_hanging(database_url, monkeypatch):
    # GIVEN another session holds an advisory xact lock and does not let go
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "200")
    with db.connect(database_url) as holder, db.connect(database_url) as waiter, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(161616)")
        # WHEN this session wants the same lock THEN Postgres gives up after lock_timeout
        with pytest.raises(psycopg.errors.LockNotAvailable), waiter.transaction():
            waiter.execute("SELECT pg_advisory_xact_lock(161616)")


def test_a_hung_statement_is_cancelled_at_statement_timeout(database_url, monkeypatch):
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "100")
    with db.connect(database_url) as conn, pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(30)")


def test_an_abandoned_transaction_is_ended_by_the_server(database_url, monkeypatch):
    # GIVEN a transaction left open (a worker stuck between two statements) holding a row lock
    monkeypatch.setenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "100")
    stuck = db.connect(database_url)
    stuck.execute("BEGIN")
    stuck.execute("SELECT pg_advisory_xact_lock(171717)")
    # WHEN another session waits for that lock (longer than the idle timeout, shorter than its own lock timeout)
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "10000")
    with db.connect(database_url) as other, other.transaction():
        # THEN the server ended the stuck session and the lock was released to the waiter
        other.execute("SELECT pg_advisory_xact_lock(171717)")
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        stuck.execute("SELECT 1")
    stuck.close()
