"""A real IMAP server on loopback for tests and benchmarks: Debian's dovecot with its own config.

Everything lives in a temporary directory: the config, a passwd-file of users
(plaintext passwords, plaintext auth allowed: loopback only), one Maildir per user
that ``add_mail`` fills by writing files (dovecot picks them up on the next SELECT),
and the logs. A non-privileged port is picked at start. As root, mail is accessed
as the ``dovecot`` system user (dovecot refuses uid 0 for mail); otherwise as the
current user.
"""

from __future__ import annotations

import email.utils
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)


def available() -> bool:
    return DOVECOT is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dovecot:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="eo-dovecot-")))
    port: int = field(default_factory=_free_port)
    _passwd_mtime: int = 0
    users: dict[str, str] = field(default_factory=dict)
    #: (certificate chain, key) PEM files: IMAP over TLS only on ``port`` (imaps), instead of plain IMAP
    tls: tuple[Path, Path] | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _ids(self) -> tuple[int, int, str]:
        if os.getuid() == 0:
            entry = pwd.getpwnam("dovecot")
            return entry.pw_uid, entry.pw_gid, "dovecot"
        entry = pwd.getpwuid(os.getuid())
        return entry.pw_uid, entry.pw_gid, entry.pw_name

    def _config(self) -> str:
        uid, gid, name = self._ids()
        login_user = "dovenull" if os.getuid() == 0 else name
        internal_user = "dovecot" if os.getuid() == 0 else name
        return f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{self._ssl()}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {uid}
mail_location = maildir:{self.root}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {0 if self.tls else self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port if self.tls else 0}
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""

    def _ssl(self) -> str:
        if self.tls is None:
            return "ssl = no"
        cert, key = self.tls
        return f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}"

    def start(self) -> Dovecot:
        if DOVECOT is None:
            raise RuntimeError("dovecot is not installed (apt-get install -y dovecot-imapd)")
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "passwd").write_text("")
        (self.root / "dovecot.conf").write_text(self._config())
        uid, gid, _ = self._ids()
        os.chown(self.root / "mail", uid, gid)
        # mkdtemp makes 0700; dovecot's unprivileged processes must reach the Maildirs beneath it.
        os.chmod(self.root, 0o755)  # noqa: S103  # nosec B103 - a test directory, readable on purpose
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"dovecot exited: {err}{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if self.tls is not None or s.recv(100).startswith(b"* OK"):  # imaps: TLS comes first
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_for_login(self, username: str, password: str, timeout: float = 15.0) -> None:
        """Until dovecot lets this user in: it notices a changed passwd-file on its own schedule."""
        import imaplib

        deadline = time.monotonic() + timeout
        while True:
            try:
                with imaplib.IMAP4(self.host, self.port) as client:
                    client.login(username, password)
                    return
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def add_user(self, username: str, password: str) -> None:
        """A passwd-file user (re-read by dovecot on each login)."""
        self.users[username] = password
        lines = [f"{u}:{{PLAIN}}{p}::::::" for u, p in self.users.items()]
        # Written aside, then renamed over: a login at that moment reads the old file or the new one, never a
        # truncated one. Dovecot re-reads a passwd-file when its mtime (whole seconds) changes: a user added in
        # the second of the last read was refused ("auth failed") until the next second's change, so every
        # write gets an mtime one second past the last one.
        tmp = self.root / "passwd.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        self._passwd_mtime = max(int(time.time()), self._passwd_mtime + 1)
        os.utime(tmp, (self._passwd_mtime, self._passwd_mtime))
        tmp.rename(self.root / "passwd")
        uid, gid, _ = self._ids()
        maildir = self.root / "mail" / username / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.root / "mail" / username, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            os.chown(path, uid, gid)

    def add_mail(
        self,
        username: str,
        message_id: str | None,
        subject: str = "statement",
        sender: str = "bank@example.com",
        body: str = "Your balance changed.",
        received: float | None = None,
    ) -> None:
        """Deliver a mail into the user's Maildir/new, as a local delivery agent would."""
        lines = [
            f"From: {sender}",
            f"To: {username}@example.com",
            f"Subject: {subject}",
            f"Date: {email.utils.formatdate(received, usegmt=True)}",
        ]
        if message_id is not None:
            lines.append(f"Message-ID: {message_id}")
        self.add_raw_mail(username, "\r\n".join([*lines, "", body, ""]).encode(), received)

    def add_raw_mail(self, username: str, raw: bytes, received: float | None = None) -> None:
        """Deliver a whole RFC 5322 message (MIME parts, attachments) as it is."""
        uid, gid, _ = self._ids()
        maildir = self.root / "mail" / username / "Maildir"
        name = f"{int(time.time())}.{uuid.uuid4().hex}.eo-test"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, uid, gid)
        if received is not None:
            os.utime(tmp, (received, received))  # the INTERNALDATE of a Maildir mail is its mtime
        tmp.rename(maildir / "new" / name)
