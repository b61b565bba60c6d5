"""Mailbox job tests: a real dovecot on loopback behind a connection-counting proxy, user setup,
and child processes (spawned, like Lambda sandboxes) that run the real handlers."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from devstack import dovecot as dovecot_mod
from devstack.dovecot import Dovecot
from devstack.imap_proxy import CountingImapProxy
from tests.harness import TEST_SECRETS

TRIGGER = "JobTriggerFunction"
SCHEDULER = "JobSchedulerFunction"
WORKER = "JobWorkerFunction"
TOKEN_HEADERS = {"authorization": f"Bearer {TEST_SECRETS['API_TOKEN']}"}


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_mod.available():
        pytest.skip("dovecot is not installed: apt-get install -y dovecot-imapd (.ci/run does it)")
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def imap_proxy(dovecot: Dovecot) -> Iterator[CountingImapProxy]:
    proxy = CountingImapProxy((dovecot.host, dovecot.port)).start()
    yield proxy
    proxy.stop()


@dataclass
class MailboxUser:
    user_id: str
    username: str  # the IMAP login (unique per test: dovecot outlives the test)
    secret_name: str
    password: str
    dovecot: Dovecot
    proxy: CountingImapProxy

    def add_mail(self, message_id: str | None, **kw: Any) -> None:
        self.dovecot.add_mail(self.username, message_id, **kw)

    @property
    def env(self) -> dict[str, str]:
        return {self.secret_name: self.password}

    @property
    def max_connections_at_once(self) -> int:
        return self.proxy.max_at_once.get(self.username, 0)

    @property
    def logins(self) -> int:
        return self.proxy.logins.get(self.username, 0)


@pytest.fixture
def mailbox_user(
    db: psycopg.Connection[Any], dovecot: Dovecot, imap_proxy: CountingImapProxy, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., MailboxUser]:
    """Factory: a configured user (mailbox_configs row) with a dovecot account and its password secret."""

    def make(user_id: str = "alice", interval_minutes: int = 15, enabled: bool = True) -> MailboxUser:
        suffix = uuid.uuid4().hex[:8]
        user = MailboxUser(
            user_id=user_id,
            username=f"{user_id}-{suffix}",
            secret_name=f"IMAP_PASSWORD_{suffix.upper()}",
            password=f"pw-{uuid.uuid4().hex}",
            dovecot=dovecot,
            proxy=imap_proxy,
        )
        dovecot.add_user(user.username, user.password)
        if not dovecot.tls:
            dovecot.wait_for_login(user.username, user.password)
        monkeypatch.setenv(user.secret_name, user.password)  # secrets.get_secret: the environment first
        db.execute(
            "INSERT INTO mailbox_configs (user_id, interval_minutes, enabled, imap_host, imap_port, imap_username,"
            " imap_ssl, password_secret) VALUES (%s, %s, %s, %s, %s, %s, false, %s)",
            (user_id, interval_minutes, enabled, imap_proxy.host, imap_proxy.port, user.username, user.secret_name),
        )
        return user

    return make


def jobs(db: psycopg.Connection[Any], user_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT job_id, status, origin, attempts, mails_processed FROM mailbox_jobs WHERE user_id = %s ORDER BY id",
        (user_id,),
    ).fetchall()


# --- child processes (spawned): each loads the real handler with the stack's environment ---------------


def _prepare(env: dict[str, str]) -> None:
    os.environ.update(env)
    from devstack.lambda_runtime import add_code_paths

    add_code_paths()


def trigger_child(env: dict[str, str], user_id: str, start_at: float) -> tuple[int, dict[str, Any]]:
    """POST /jobs/{user_id}/trigger once, at ``start_at``."""
    _prepare(env)
    from devstack.lambda_runtime import LambdaContext, apigw_event, load_handler

    handler = load_handler(TRIGGER)
    event = apigw_event(
        "POST", f"http://127.0.0.1:3000/jobs/{user_id}/trigger", b"", TOKEN_HEADERS, path_params={"user_id": user_id}
    )
    time.sleep(max(0.0, start_at - time.time()))
    result = handler(event, LambdaContext(function_name=TRIGGER))
    return int(result["statusCode"]), json.loads(result["body"])


def triggers_child(env: dict[str, str], user_id: str, count: int, start_at: float) -> list[tuple[int, dict[str, Any]]]:
    """POST /jobs/{user_id}/trigger ``count`` times in a row from one process (a warm sandbox), from ``start_at``."""
    _prepare(env)
    from devstack.lambda_runtime import LambdaContext, apigw_event, load_handler

    handler = load_handler(TRIGGER)
    url = f"http://127.0.0.1:3000/jobs/{user_id}/trigger"
    events = [apigw_event("POST", url, b"", TOKEN_HEADERS, path_params={"user_id": user_id}) for _ in range(count)]
    time.sleep(max(0.0, start_at - time.time()))
    answers = []
    for event in events:
        result = handler(event, LambdaContext(function_name=TRIGGER))
        answers.append((int(result["statusCode"]), json.loads(result["body"])))
    return answers


def tick_child(env: dict[str, str], start_at: float) -> tuple[int, dict[str, Any]]:
    """One scheduler tick (the EventBridge invocation), at ``start_at``."""
    _prepare(env)
    from devstack.lambda_runtime import LambdaContext, load_handler

    handler = load_handler(SCHEDULER)
    time.sleep(max(0.0, start_at - time.time()))
    return 0, handler({"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext(SCHEDULER, 60))


def work_child(env: dict[str, str], body: str, start_at: float) -> dict[str, Any]:
    """Hand one JobsQueue message body to the worker handler; return its batch response."""
    _prepare(env)
    from devstack.lambda_runtime import LambdaContext, load_handler, sqs_event

    handler = load_handler(WORKER)
    message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": "local",
        "Body": body,
        "Attributes": {"MessageGroupId": "g", "SequenceNumber": "1"},
    }
    time.sleep(max(0.0, start_at - time.time()))
    result: dict[str, Any] = handler(
        sqs_event([message], "arn:aws:sqs:us-east-1:000000000000:JobsQueue.fifo"), LambdaContext(WORKER, 600)
    )
    return result


def call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """A picklable trampoline: run_parallel with different child functions in one pool."""
    return fn(*args)
