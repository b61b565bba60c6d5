"""The local stack's Lambda concurrency model: bounded containers per function, one kept connection each."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from devstack import containers as containers_module
from devstack.containers import Container, Containers, Throttled, current
from devstack.template import Template


class FakeConnection:
    opened = 0

    def __init__(self) -> None:
        FakeConnection.opened += 1
        self.closed = False
        self.broken = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeConnection.opened = 0
    monkeypatch.setattr(Container, "connection", _fake_connection)


def _fake_connection(self: Container) -> Any:
    if self.conn is None or self.conn.closed:
        self.conn = FakeConnection()
    return self.conn


def _hold(pool: Containers, function: str, started: threading.Barrier, release: threading.Event, seen: list[Any]):
    with pool.invocation(function) as container:
        seen.append(container.connection())
        started.wait()
        release.wait()


def test_a_burst_past_the_function_concurrency_waits_for_containers_and_reuses_their_connections():
    # GIVEN a function of concurrency 3 with its 3 containers busy
    pool = Containers({"F": 3}, account_limit=10)
    started, release, seen = threading.Barrier(4), threading.Event(), []
    threads = [threading.Thread(target=_hold, args=(pool, "F", started, release, seen)) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait()
    assert pool.snapshot()["running"] == {"F": 3}

    # WHEN 20 more invocations arrive, then the 3 finish
    done: list[int] = []

    def invoke() -> None:
        with pool.invocation("F") as container:
            container.connection()
            done.append(1)

    burst = [threading.Thread(target=invoke) for _ in range(20)]
    for t in burst:
        t.start()
    release.set()
    for t in threads + burst:
        t.join()

    # THEN every invocation ran, on the same 3 containers and their 3 connections
    assert len(done) == 20
    assert FakeConnection.opened == 3
    assert pool.snapshot()["idle"] == {"F": 3}
    assert pool.stats["started"] == 3


def test_when_no_container_comes_free_in_time_the_invocation_is_throttled():
    pool = Containers({"F": 1}, account_limit=10, wait_s=0)
    with pool.invocation("F"), pytest.raises(Throttled), pool.invocation("F"):
        pass
    assert pool.stats["throttled"] == 1


def test_the_account_limit_reclaims_an_idle_container_of_another_function_and_closes_its_connection():
    pool = Containers({"A": 5, "B": 5}, account_limit=2, wait_s=0)
    with pool.invocation("A") as a1, pool.invocation("A") as a2:
        conns = [a1.connection(), a2.connection()]
    # both of A's containers are idle; B needs one: the account is full, so one of A's goes
    with pool.invocation("B") as b:
        b.connection()
        assert pool.total() == 2
    assert sum(c.closed for c in conns) == 1
    assert pool.stats["reclaimed"] == 1
    # and with every container busy, nothing more starts
    with pool.invocation("A"), pool.invocation("B"), pytest.raises(Throttled), pool.invocation("A"):
        pass


def test_db_connection_answers_the_running_invocations_container(monkeypatch: pytest.MonkeyPatch):
    from exactly_once.core import db

    monkeypatch.setattr(db, "connection", db.connection)
    monkeypatch.setattr(db, "reset", db.reset)
    containers_module.bind_library_connections()
    pool = Containers({"F": 2}, account_limit=4)
    with pool.invocation("F") as container:
        assert current() is container
        assert db.connection() is container.conn
        db.reset()
        assert container.conn is None
    assert current() is None
    with pytest.raises(RuntimeError, match="outside an invocation"):
        db.connection()


def test_idle_containers_past_their_idle_time_are_closed():
    pool = Containers({"F": 2}, account_limit=4, idle_s=-1)  # every idle container has expired
    with pool.invocation("F") as container:
        conn = container.connection()
    with pool.invocation("F"):
        pass
    assert conn.closed


def test_template_concurrency_with_defaults_sizes_each_function():
    template = Template(
        {
            "Parameters": {
                "UseReserved": {"Type": "String", "Default": "false"},
                "WorkerConcurrency": {"Type": "Number", "Default": "7"},
                "ApiConcurrency": {"Type": "Number", "Default": "4"},
            },
            "Conditions": {"Reserved": {"Fn::Equals": [{"Ref": "UseReserved"}, "true"]}},
            "Resources": {
                "Api": {
                    "Type": "AWS::Serverless::Function",
                    "Properties": {
                        "ReservedConcurrentExecutions": {
                            "Fn::If": ["Reserved", {"Ref": "ApiConcurrency"}, {"Ref": "AWS::NoValue"}]
                        }
                    },
                },
                "Worker": {
                    "Type": "AWS::Serverless::Function",
                    "Properties": {
                        "Events": {
                            "Q": {
                                "Type": "SQS",
                                "Properties": {"ScalingConfig": {"MaximumConcurrency": {"Ref": "WorkerConcurrency"}}},
                            }
                        }
                    },
                },
                "Pinned": {"Type": "AWS::Serverless::Function", "Properties": {"ReservedConcurrentExecutions": 1}},
            },
        }
    )
    assert template.function_concurrency("Api") is None  # reserved concurrency off by default
    assert template.function_concurrency("Worker") == 7
    assert template.function_concurrency("Pinned") == 1
