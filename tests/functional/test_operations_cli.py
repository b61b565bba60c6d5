"""The operator CLI end to end on the test stack: quarantine review, replay with lineage, trace.

Real handlers, serialised moto, Postgres and the fake Graph over HTTP; the CLI is called
in-process through its ``main`` with the stack's environment (DATABASE_URL, EVENTS_QUEUE_URL,
IDEMPOTENCY_TABLE, AWS_ENDPOINT_URL), as an operator's shell would have it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg

from devstack.aws_local import boto_client
from devstack.fakes import Behaviour
from exactly_once.core import aws
from exactly_once.ops import cli
from exactly_once.ops import quarantine as replay
from exactly_once.ops.trace import ingest_record_id
from tests.graph_support import SUB, add_mail, body, item, post

KEY_M1 = f'graph:{SUB}|created|m1|W/"etag-1"'


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()  # drop what the handlers printed (logs, EMF) before the command
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def run_json(capsys, *argv: str):
    code, out = run_cli(capsys, *argv)
    assert code == 0, out
    return json.loads(out)


def quarantine_mail_without_message_id(stack, db) -> int:
    """A notification whose mail has no internetMessageId: the worker quarantines it."""
    add_mail(stack, "m1", "")
    assert post(stack, body(item("m1"))).json()["accepted"] == 1
    stack.drain()
    rows = db.execute("SELECT id, status FROM quarantine WHERE event_key = %s", (KEY_M1,)).fetchall()
    assert len(rows) == 1 and rows[0][1] == "open"
    return int(rows[0][0])


def test_replay_after_the_fix_creates_the_ticket_once_and_keeps_the_lineage(stack, db, capsys):
    # GIVEN a mail quarantined because Graph returned it without an internetMessageId
    qid = quarantine_mail_without_message_id(stack, db)
    listed = run_json(capsys, "quarantine", "list", "--json")
    assert [(r["id"], r["event_key"], r["replayable"]) for r in listed] == [(qid, KEY_M1, True)]
    assert "internetMessageId" in listed[0]["reason"]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0
    # WHEN the mail is fixed at the source and the operator replays the row
    add_mail(stack, "m1", "<m1@example.com>")
    done = run_json(capsys, "quarantine", "replay", str(qid), "--by", "ops@test", "--note", "mail fixed")
    assert (done["replayed"], done["key"], done["previous_outcome"]) == (qid, KEY_M1, "quarantined")
    stack.drain()
    # THEN the replay passed SQS and the event log, and made exactly one ticket
    assert db.execute("SELECT external_message_id FROM tickets").fetchall() == [("<m1@example.com>",)]
    assert stack.fakes.count("graph.get_message", "m1") == 2
    # AND the lineage is kept: the row, the replay log, the event log
    assert db.execute("SELECT status, handled_by, note FROM quarantine WHERE id = %s", (qid,)).fetchone() == (
        "replayed",
        "ops@test",
        "mail fixed",
    )
    replay = db.execute(
        "SELECT quarantine_id, requested_by, previous_outcome, outcome, settled_at IS NOT NULL, queue_message_id"
        " FROM replay_log"
    ).fetchall()
    assert replay == [(qid, "ops@test", "quarantined", "ticket", True, done["queue_message_id"])]
    assert db.execute(
        "SELECT outcome, replay_of, deliveries FROM event_log WHERE event_key = %s", (KEY_M1,)
    ).fetchone()[:2] == ("ticket", KEY_M1)
    # AND a second replay of the same row is refused (it is no longer open), nothing re-sent
    code, _ = run_cli(capsys, "quarantine", "replay", str(qid))
    assert code == 2
    assert stack.queue_depth("EventsQueue") == 0
    # AND Graph's own re-delivery of the original notification is still stopped at ingest
    assert post(stack, body(item("m1"))).json()["duplicates"] == 1


def test_replay_of_an_event_whose_effect_exists_is_a_duplicate_not_a_second_ticket(stack, db, capsys):
    # GIVEN the "created" notification quarantined, then the mail fixed and its "updated" notification
    # making the ticket through the normal path
    qid = quarantine_mail_without_message_id(stack, db)
    add_mail(stack, "m1", "<m1@example.com>")
    post(stack, body(item("m1", change="updated", etag='W/"etag-2"')))
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    # WHEN the operator replays the quarantined "created" notification
    run_json(capsys, "quarantine", "replay", str(qid), "--by", "ops@test")
    stack.drain()
    # THEN Postgres (advisory lock + unique message id) stops it: still one ticket
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT outcome FROM replay_log").fetchone() == ("duplicate",)
    traced = run_json(capsys, "trace", KEY_M1)
    assert traced["events"][0]["outcome"] == "duplicate"
    assert any(s["layer"].startswith("Postgres") for s in traced["stopped"])
    assert [e["effect"] for e in traced["effects"]] == ["ticket"]


def test_trace_shows_each_layer_that_stopped_a_duplicate(stack, db, capsys):
    # GIVEN one mail, notified three times: ingest stops the two re-deliveries
    add_mail(stack, "m1", "<m1@example.com>")
    answers = [post(stack, body(item("m1"))).json() for _ in range(3)]
    assert [a["accepted"] for a in answers] == [1, 0, 0]
    stack.drain()
    traced = run_json(capsys, "trace", KEY_M1)
    # THEN the ingest record is found where Powertools wrote it (same hash), completed
    assert traced["ingest"]["id"] == ingest_record_id("graph", KEY_M1)
    assert traced["ingest"]["status"] == "COMPLETED"
    assert [s["layer"] for s in traced["stopped"]] == ["ingest (DynamoDB)"]
    assert traced["events"][0]["outcome"] == "ticket"
    assert traced["effects"][0]["effect"] == "ticket"
    assert traced["effects"][0]["external_message_id"] == "<m1@example.com>"
    # WHEN the ingest record is gone (its window passed) and Graph delivers once more
    ddb = boto_client("dynamodb", stack.aws.endpoint)
    ddb.delete_item(TableName="IdempotencyTable", Key={"id": {"S": traced["ingest"]["id"]}})
    stack._modules.pop("GraphIngestFunction")  # a new container: no local cache of the record either
    assert post(stack, body(item("m1"))).json()["accepted"] == 1
    stack.drain()
    # THEN the worker's event log stopped it, and trace says so
    traced = run_json(capsys, "trace", KEY_M1)
    assert traced["events"][0]["deliveries"] == 2
    assert any(s["layer"].startswith("worker") for s in traced["stopped"])
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert stack.fakes.count("graph.get_message", "m1") == 1


def test_trace_of_an_unknown_key_says_so(stack, capsys):
    code, out = run_cli(capsys, "trace", "graph:nothing|created|x|y")
    assert code == 1
    assert json.loads(out)["events"] == []


def test_resolve_closes_the_row_with_a_note(stack, db, capsys):
    qid = quarantine_mail_without_message_id(stack, db)
    shown = run_json(capsys, "quarantine", "resolve", str(qid), "--note", "spam, no action", "--by", "ops@test")
    assert (shown["status"], shown["note"], shown["handled_by"]) == ("resolved", "spam, no action", "ops@test")
    assert run_json(capsys, "quarantine", "list", "--json") == []
    assert [r["id"] for r in run_json(capsys, "quarantine", "list", "--status", "resolved", "--json")] == [qid]
    code, _ = run_cli(capsys, "quarantine", "replay", str(qid))
    assert code == 2


def test_a_refused_replay_leaves_the_row_open(stack, db, capsys):
    qid = quarantine_mail_without_message_id(stack, db)
    missing = stack.aws.physical["EventsQueue"].replace("EventsQueue", "NoSuchQueue")
    code, _ = run_cli(capsys, "--events-queue-url", missing, "quarantine", "replay", str(qid))
    assert code == 2
    assert db.execute("SELECT status FROM quarantine WHERE id = %s", (qid,)).fetchone() == ("open",)
    assert db.execute("SELECT outcome FROM replay_log").fetchone() == ("not_sent",)


def test_a_row_without_an_event_is_not_replayable(stack, db, capsys):
    # A flow that quarantines something other than a queued event (no envelope, no event log entry).
    qid = db.execute(
        "INSERT INTO quarantine (provider, event_key, reason, raw) VALUES ('livekit', 'livekit:feedback:9', 'x', '{}')"
        " RETURNING id"
    ).fetchone()[0]
    code, _ = run_cli(capsys, "quarantine", "replay", str(qid))
    assert code == 2
    assert db.execute("SELECT status FROM quarantine WHERE id = %s", (qid,)).fetchone() == ("open",)
    assert db.execute("SELECT count(*) FROM replay_log").fetchone()[0] == 0
    assert stack.queue_depth("EventsQueue") == 0


def test_the_cli_is_installed_with_the_project():
    script = Path(sys.executable).with_name("exactly-once")
    assert script.exists(), "run `make install` (pip install -e .)"
    out = subprocess.run([str(script), "quarantine", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(action in out for action in ("list", "show", "replay", "resolve"))


def test_a_failed_event_in_the_dlq_is_replayed_once_graph_is_back(stack, db, capsys):
    # GIVEN Graph failing for longer than every retry: the event ends in the events DLQ
    add_mail(stack, "m1", "<m1@example.com>")
    stack.fakes.behaviours["graph.get_message"] = Behaviour(fail_times=1000, fail_status=503)
    post(stack, body(item("m1")))
    stack.drain()
    dlq = stack.aws.physical["EventsDeadLetterQueue"]
    assert stack.queue_depth("EventsDeadLetterQueue") == 1
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0
    listed = run_json(capsys, "dlq", "list")  # found through the events queue's redrive policy
    assert [(d["key"], d["provider"]) for d in listed] == [(KEY_M1, "graph")]
    assert stack.queue_depth("EventsDeadLetterQueue") == 1  # list takes nothing
    # WHEN Graph is back and the operator replays the DLQ
    stack.fakes.behaviours.pop("graph.get_message")
    done = run_json(capsys, "--dlq-url", dlq, "dlq", "replay", "--by", "ops@test", "--note", "Graph outage over")
    assert [(r["key"], r["previous_outcome"]) for r in done] == [(KEY_M1, None)]
    stack.drain()
    # THEN one ticket, the DLQ empty, and the replay recorded with its outcome
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert stack.queue_depth("EventsDeadLetterQueue") == 0
    assert db.execute("SELECT quarantine_id, requested_by, outcome FROM replay_log").fetchall() == [
        (None, "ops@test", "ticket")
    ]
    assert db.execute("SELECT outcome, replay_of FROM event_log").fetchall() == [("ticket", KEY_M1)]


def test_a_notification_the_adapter_could_not_read_is_replayed_from_a_corrected_copy(stack, db, capsys, tmp_path):
    # GIVEN an authentic Graph item without resourceData.id: quarantined by the worker, nothing fetched
    add_mail(stack, "m1", "<m1@example.com>")
    broken = item("m1")
    del broken["resourceData"]["id"]
    post(stack, body(broken))
    stack.drain()
    qid, qkey, raw = db.execute("SELECT id, event_key, raw FROM quarantine").fetchone()
    assert qkey.startswith("graph:quarantine:")
    # WHEN replayed as it is, it is refused and says how to fix it
    capsys.readouterr()
    assert cli.main(["quarantine", "replay", str(qid)]) == 2
    assert "--payload" in capsys.readouterr().err
    # AND the operator replays a corrected copy of the item
    fixed = json.loads(raw)
    fixed["resourceData"]["id"] = "m1"
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps(fixed))
    done = run_json(capsys, "quarantine", "replay", str(qid), "--payload", str(path), "--by", "ops@test")
    assert done["key"] == KEY_M1
    stack.drain()
    # THEN the ticket exists once, and the lineage leads from the quarantined key to it
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT outcome, replay_of FROM event_log WHERE event_key = %s", (KEY_M1,)).fetchone() == (
        "ticket",
        qkey,
    )
    traced = run_json(capsys, "trace", qkey)
    assert [(r["replayed_key"], r["outcome"]) for r in traced["replays"]] == [(KEY_M1, "ticket")]
    assert {e["event_key"]: e["outcome"] for e in traced["events"]} == {qkey: "quarantined", KEY_M1: "ticket"}
    assert [e["effect"] for e in traced["effects"]] == ["ticket"]


def test_a_replay_that_fails_again_reopens_the_row(stack, db, capsys):
    # GIVEN a quarantined mail replayed before anyone fixed it
    qid = quarantine_mail_without_message_id(stack, db)
    run_json(capsys, "quarantine", "replay", str(qid), "--by", "ops@test")
    stack.drain()
    # THEN it is quarantined again: the row is open for the next operator, the replay says what happened
    assert db.execute("SELECT status, attempts FROM quarantine WHERE id = %s", (qid,)).fetchone() == ("open", 2)
    assert db.execute("SELECT outcome FROM replay_log").fetchall() == [("quarantined",)]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0
    # AND once the mail is fixed, the next replay lands
    add_mail(stack, "m1", "<m1@example.com>")
    run_json(capsys, "quarantine", "replay", str(qid), "--by", "ops@test")
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert [r[0] for r in db.execute("SELECT outcome FROM replay_log ORDER BY id")] == ["quarantined", "ticket"]


def test_two_operators_replaying_one_row_at_once_send_it_once(stack, db, database_url):
    # GIVEN one open row and two operators racing to replay it (separate connections, as two shells)
    qid = quarantine_mail_without_message_id(stack, db)
    add_mail(stack, "m1", "<m1@example.com>")
    barrier = threading.Barrier(2)
    results: list[str] = []

    def operator(name: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            try:
                replay.replay(conn, aws.sqs(), stack.aws.physical["EventsQueue"], qid, by=name)
                results.append("sent")
            except replay.NotReplayableError:
                results.append("refused")

    threads = [threading.Thread(target=operator, args=(f"ops{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # THEN the row lock lets one replay through; the other sees it is no longer open
    assert sorted(results) == ["refused", "sent"]
    assert db.execute("SELECT count(*) FROM replay_log").fetchone()[0] == 1
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1


def test_the_cli_finds_everything_through_the_stack_on_aws(stack, db, capsys, monkeypatch, database_url):
    # GIVEN a deployed stack (in moto's CloudFormation): its outputs name the queue and the table,
    # its DatabaseSecretArn parameter the RDS secret, and nothing is in the operator's environment
    conninfo = psycopg.conninfo.conninfo_to_dict(database_url)
    secret_arn = boto_client("secretsmanager", stack.aws.endpoint).create_secret(
        Name=f"rds-{conninfo['dbname']}",
        SecretString=json.dumps(
            {
                "username": conninfo.get("user", "postgres"),
                "password": "",
                "host": conninfo["host"],
                "port": int(conninfo.get("port", 5432)),
                "dbname": conninfo["dbname"],
            }
        ),
    )["ARN"]
    template = {
        "Parameters": {"DatabaseSecretArn": {"Type": "String"}},
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "eo-marker"}}},
        "Outputs": {
            "EventsQueueUrl": {"Value": stack.aws.physical["EventsQueue"]},
            "IdempotencyTableName": {"Value": "IdempotencyTable"},
        },
    }
    boto_client("cloudformation", stack.aws.endpoint).create_stack(
        StackName="eo-prod",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "DatabaseSecretArn", "ParameterValue": secret_arn}],
    )
    qid = quarantine_mail_without_message_id(stack, db)
    add_mail(stack, "m1", "<m1@example.com>")
    # The URL from the RDS secret verifies TLS against the RDS CAs; this machine's Postgres offers no TLS,
    # so (here only) the verified mode is swapped for a plain one after checking it was asked for.
    from exactly_once.core import db as db_module

    built = db_module.url_from_secret

    def plain(secret):
        url = built(secret)
        assert "sslmode=verify-full" in url
        return url.replace("sslmode=verify-full", "sslmode=disable")

    monkeypatch.setattr(db_module, "url_from_secret", plain)

    def operator(*argv: str):
        with monkeypatch.context() as shell:  # the operator's shell: none of the functions' variables
            for name in ("DATABASE_URL", "EVENTS_QUEUE_URL", "IDEMPOTENCY_TABLE", "DB_SECRET_ARN"):
                shell.setenv(name, "")
            return run_json(capsys, "--stack-name", "eo-prod", *argv)

    # WHEN the operator lists, replays and traces with --stack-name only
    listed = operator("quarantine", "list", "--json")
    operator("quarantine", "replay", str(qid), "--by", "ops@aws")
    stack.drain()
    traced = operator("trace", KEY_M1)
    # THEN every step reached the database (through the secret), the queue and the table
    assert [r["id"] for r in listed] == [qid]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert traced["ingest"]["status"] == "COMPLETED"
    assert traced["replays"][0]["requested_by"] == "ops@aws"


def test_an_interrupted_replay_is_sent_again_with_force(stack, db, capsys):
    # GIVEN a replay whose process died after marking the row and before sending (ops.replay.after_mark)
    qid = quarantine_mail_without_message_id(stack, db)
    add_mail(stack, "m1", "<m1@example.com>")
    db.execute("UPDATE quarantine SET status = 'replayed', handled_by = 'ops@test' WHERE id = %s", (qid,))
    db.execute(
        "INSERT INTO replay_log (quarantine_id, provider, event_key, requested_by)"
        " VALUES (%s, 'graph', %s, 'ops@test')",
        (qid, KEY_M1),
    )
    # WHEN replayed without --force it is refused with the hint; with --force it is sent
    capsys.readouterr()
    assert cli.main(["quarantine", "replay", str(qid)]) == 2
    assert "--force" in capsys.readouterr().err
    run_json(capsys, "quarantine", "replay", str(qid), "--force", "--by", "ops@test")
    stack.drain()
    # THEN the ticket exists once; the interrupted replay stays in the log, unsent
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT queue_message_id IS NULL, outcome FROM replay_log ORDER BY id").fetchall() == [
        (True, None),
        (False, "ticket"),
    ]


def test_a_database_without_the_schema_is_a_clear_error(database_url, capsys):
    empty = f"eo_empty_{uuid.uuid4().hex[:8]}"
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{empty}"')
    try:
        capsys.readouterr()
        code = cli.main(["--database-url", admin_url.rsplit("/", 1)[0] + f"/{empty}", "quarantine", "list"])
        assert code == 2
        assert "make migrate" in capsys.readouterr().err
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)')
