"""``exactly-once``: the operator's command line (installed with the project: ``pip install -e .``).

    exactly-once quarantine list [--status open|replayed|resolved|all] [--provider P] [--limit N] [--json]
    exactly-once quarantine show ID
    exactly-once quarantine replay ID [--note TEXT] [--payload FILE] [--force]
    exactly-once quarantine resolve ID --note TEXT
    exactly-once send resolve SEND_ID sent|resend|drop --note TEXT [--provider-message-id ID]
    exactly-once dlq list|replay [--limit N] [--note TEXT]
    exactly-once trace KEY [--provider P]
    exactly-once graph watch|unwatch|status|resync [MAILBOX]   (ops/graph_cli.py)
    exactly-once forward list|replay [SEND_ID ...] --note TEXT   (ops/forward_cli.py)

Where things are: Postgres from ``--database-url`` / ``DATABASE_URL``, else the RDS secret (``--db-secret-arn``
/ ``DB_SECRET_ARN`` / the stack's ``DatabaseSecretArn`` parameter); the events queue and the idempotency table
from the flags, the environment (``EVENTS_QUEUE_URL``, ``IDEMPOTENCY_TABLE``) or the stack's outputs
(``--stack-name``); ``--local`` reads the local stack's ``env.local.json`` (its moto endpoint, database, queues).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from exactly_once.core.display import escaped_output, json_text
from exactly_once.core.errors import ExactlyOnceError
from exactly_once.ops import forward_cli, graph_cli

STATUSES = ("open", "replayed", "resolved", "all")


def main(argv: list[str] | None = None) -> int:
    with escaped_output():  # ids and reasons come from providers: no escape sequence reaches the terminal
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.resolve(args)
        return int(args.run(args, settings))
    except ExactlyOnceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database's own errors, without importing psycopg before it is needed
        if type(exc).__module__.startswith("psycopg"):
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            hint = " (are the migrations applied? `make migrate`)" if "does not exist" in first else ""
            print(f"error: database: {first}{hint}", file=sys.stderr)
            return 2
        raise


class Settings:
    """Where the database, the events queue and the idempotency table are, found once."""

    def __init__(
        self,
        database_url: str | None,
        events_queue_url: str | None,
        idempotency_table: str | None,
        dlq_url: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.events_queue_url = events_queue_url
        self.idempotency_table = idempotency_table
        self.dlq_url = dlq_url

    @classmethod
    def resolve(cls, args: argparse.Namespace) -> Settings:
        if args.local is not None:
            _load_env_file(Path(args.local))
        outputs: dict[str, str] = {}
        parameters: dict[str, str] = {}
        if args.stack_name:
            outputs, parameters = _stack(args.stack_name)
        secret_arn = args.db_secret_arn or os.environ.get("DB_SECRET_ARN") or parameters.get("DatabaseSecretArn")
        if secret_arn and not (args.database_url or os.environ.get("DATABASE_URL")):
            os.environ["DB_SECRET_ARN"] = secret_arn  # db.database_url() reads the secret
        return cls(
            database_url=args.database_url or os.environ.get("DATABASE_URL"),
            events_queue_url=args.events_queue_url
            or os.environ.get("EVENTS_QUEUE_URL")
            or outputs.get("EventsQueueUrl"),
            idempotency_table=args.idempotency_table
            or os.environ.get("IDEMPOTENCY_TABLE")
            or outputs.get("IdempotencyTableName"),
            dlq_url=args.dlq_url or os.environ.get("EVENTS_DLQ_URL") or outputs.get("EventsDeadLetterQueueUrl"),
        )

    def connect(self) -> Any:
        from exactly_once.core import db

        return db.connect(self.database_url)

    def require_queue(self) -> str:
        if not self.events_queue_url:
            raise ExactlyOnceError("no events queue: pass --events-queue-url, set EVENTS_QUEUE_URL or --stack-name")
        return self.events_queue_url

    def require_dlq(self) -> str:
        if not self.dlq_url and self.events_queue_url:
            self.dlq_url = _dead_letter_queue_of(self.events_queue_url)
        if not self.dlq_url:
            raise ExactlyOnceError("no dead-letter queue: pass --dlq-url, set EVENTS_DLQ_URL or --stack-name")
        return self.dlq_url


def _dead_letter_queue_of(queue_url: str) -> str | None:
    """The events queue's own redrive target: works the same on AWS and on the local stack."""
    from botocore.exceptions import BotoCoreError, ClientError

    from exactly_once.core import aws

    try:
        sqs = aws.sqs()
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
        if "RedrivePolicy" not in attrs:
            return None
        arn = str(json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"])
        _, _, _, _, account, name = arn.split(":", 5)
        return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
    except (BotoCoreError, ClientError, ValueError, KeyError) as exc:
        raise ExactlyOnceError(f"cannot find the events queue's dead-letter queue: {exc}") from exc


def _stack(name: str) -> tuple[dict[str, str], dict[str, str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    from exactly_once.core import aws

    try:
        stack = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise ExactlyOnceError(f"cannot read stack {name}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return outputs, parameters


def _load_env_file(path: Path) -> None:
    """The local stack's env.local.json: shared parameters, then every function's own (first value wins)."""
    if not path.is_file():
        raise ExactlyOnceError(f"{path} not found: start the local stack with `make run` first")
    data = json.loads(path.read_text(encoding="utf-8"))
    merged: dict[str, str] = dict(data.get("Parameters") or {})
    for section, values in data.items():
        if section != "Parameters" and isinstance(values, dict):
            for key, value in values.items():
                merged.setdefault(key, value)
    for key, value in merged.items():
        os.environ.setdefault(key, str(value))


def _operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _print_json(value: Any) -> None:
    print(json_text(value, indent=2, default=str))


# -- commands ---------------------------------------------------------------------------


def _quarantine_list(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.ops import quarantine as replay

    with settings.connect() as conn:
        rows = replay.list_rows(
            conn, status=None if args.status == "all" else args.status, provider=args.provider, limit=args.limit
        )
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no quarantined events" + ("" if args.status == "all" else f" with status {args.status}"))
        return 0
    print(f"{'id':>6}  {'status':8}  {'provider':10}  {'created':19}  {'replay':6}  key / reason")
    for row in rows:
        created = row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{row['id']:>6}  {row['status']:8}  {row['provider']:10}  {created:19}  "
            f"{'yes' if row['replayable'] else 'no':6}  {row['event_key']}"
        )
        print(f"{'':>6}  {'':8}  {'':10}  {'':19}  {'':6}  {row['reason']}")
    return 0


def _quarantine_show(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.ops import quarantine as replay

    with settings.connect() as conn:
        _print_json(replay.show(conn, args.id))
    return 0


def _quarantine_replay(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.core import aws
    from exactly_once.ops import quarantine as replay

    payload = None
    if args.payload:
        payload = json.loads(Path(args.payload).read_text(encoding="utf-8"))
        if not isinstance(payload, dict):
            raise ExactlyOnceError("--payload must hold a JSON object")
    with settings.connect() as conn:
        done = replay.replay(
            conn,
            aws.sqs(),
            settings.require_queue(),
            args.id,
            by=args.by or _operator(),
            note=args.note,
            payload=payload,
            force=args.force,
        )
    _print_json(
        {
            "replayed": done.quarantine_id,
            "replay_id": done.replay_id,
            "key": done.event_key,
            "previous_outcome": done.previous_outcome,
            "queue_message_id": done.queue_message_id,
        }
    )
    return 0


def _quarantine_resolve(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.ops import quarantine as replay

    with settings.connect() as conn:
        _print_json(replay.resolve(conn, args.id, by=args.by or _operator(), note=args.note))
    return 0


def _send_resolve(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.sends import queue as send_queue

    with settings.connect() as conn, conn.transaction():
        try:
            status = send_queue.resolve_review(
                conn,
                args.send_id,
                args.decision,
                note=args.note,
                by=args.by or _operator(),
                provider_message_id=args.provider_message_id,
            )
        except ValueError as exc:
            raise ExactlyOnceError(str(exc)) from exc
    if status is None:
        raise ExactlyOnceError(f"send {args.send_id} is not in review")
    _print_json({"send_id": args.send_id, "decision": args.decision, "status": status})
    return 0


def _dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.core import aws
    from exactly_once.ops import quarantine as replay

    letters = replay.dead_letters(aws.sqs(), settings.require_dlq(), limit=args.limit)
    _print_json(
        [
            {
                "message_id": d.message_id,
                "receives": d.receive_count,
                "provider": d.event.provider if d.event else None,
                "key": d.event.key if d.event else None,
                "kind": d.event.kind if d.event else None,
                "replay_of": (d.event.replay or {}).get("original_key") if d.event else None,
            }
            for d in letters
        ]
    )
    return 0


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.core import aws
    from exactly_once.ops import quarantine as replay

    with settings.connect() as conn:
        done = replay.replay_dead_letters(
            conn,
            aws.sqs(),
            settings.require_dlq(),
            settings.require_queue(),
            by=args.by or _operator(),
            note=args.note,
            limit=args.limit,
        )
    _print_json([{"replay_id": r.replay_id, "key": r.event_key, "previous_outcome": r.previous_outcome} for r in done])
    return 0


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    from exactly_once.ops import trace

    dynamodb = None
    if settings.idempotency_table and not args.no_aws:
        from exactly_once.core import aws

        dynamodb = aws.dynamodb()
    with settings.connect() as conn:
        result = trace.trace(
            conn, args.key, provider=args.provider, dynamodb=dynamodb, idempotency_table=settings.idempotency_table
        )
    _print_json(result)
    ingest = (result.get("ingest") or {}).get("status")
    known = (
        result["events"] or result["quarantine"] or result["effects"] or ingest not in (None, "absent", "unreachable")
    )
    return 0 if known else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exactly-once", description="Operate an exactly-once stack.")
    parser.add_argument("--database-url", help="Postgres URL (default: DATABASE_URL)")
    parser.add_argument("--db-secret-arn", help="the RDS secret (default: DB_SECRET_ARN or the stack's parameter)")
    parser.add_argument("--stack-name", help="read queue and table names from this CloudFormation stack")
    parser.add_argument("--events-queue-url", help="the events queue (default: EVENTS_QUEUE_URL or the stack)")
    parser.add_argument("--idempotency-table", help="the ingest dedup table (default: IDEMPOTENCY_TABLE or the stack)")
    parser.add_argument("--dlq-url", help="the events dead-letter queue (default: EVENTS_DLQ_URL or the stack)")
    parser.add_argument(
        "--local", nargs="?", const="env.local.json", help="use the local stack's env.local.json (default path)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _quarantine_commands(commands)
    _send_commands(commands)
    _dlq_commands(commands)
    for more in (graph_cli, forward_cli):
        more.add_commands(commands)
    trace = commands.add_parser("trace", help="what happened to one event, layer by layer")
    trace.add_argument("key", help="the event key (event_log.event_key, e.g. graph:<sub>|created|<id>|<etag>)")
    trace.add_argument("--provider", help="default: the key's prefix")
    trace.add_argument("--no-aws", action="store_true", help="do not read the DynamoDB ingest record")
    trace.set_defaults(run=_trace)
    return parser


def _quarantine_commands(commands: Any) -> None:
    quarantine = commands.add_parser("quarantine", help="review, replay and resolve quarantined events")
    actions = quarantine.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="quarantined events, newest first")
    listing.add_argument("--status", choices=STATUSES, default="open")
    listing.add_argument("--provider")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_quarantine_list)
    show = actions.add_parser("show", help="one row: reason, raw input, replays")
    show.add_argument("id", type=int)
    show.set_defaults(run=_quarantine_show)
    again = actions.add_parser("replay", help="put the event back through the same code path, with lineage")
    again.add_argument("id", type=int)
    again.add_argument("--note", help="why (kept in replay_log and on the row)")
    again.add_argument("--by", help="who (default: user@host)")
    again.add_argument("--payload", help="a JSON file with a corrected payload to replay instead")
    again.add_argument("--force", action="store_true", help="replay a row already replayed (an interrupted replay)")
    again.set_defaults(run=_quarantine_replay)
    resolve = actions.add_parser("resolve", help="close a row by hand, with a note")
    resolve.add_argument("id", type=int)
    resolve.add_argument("--note", required=True)
    resolve.add_argument("--by", help="who (default: user@host)")
    resolve.set_defaults(run=_quarantine_resolve)


def _send_commands(commands: Any) -> None:
    send = commands.add_parser("send", help="settle a send in review (outcome unknown) after checking the provider")
    send_actions = send.add_subparsers(dest="action", required=True)
    settle = send_actions.add_parser("resolve", help="sent (give its id), resend, or drop; closes its quarantine row")
    settle.add_argument("send_id", type=int)
    settle.add_argument("decision", choices=("sent", "resend", "drop"))
    settle.add_argument("--note", required=True)
    settle.add_argument("--provider-message-id", help="the wamid / Unipile message id, for 'sent'")
    settle.add_argument("--by", help="who (default: user@host)")
    settle.set_defaults(run=_send_resolve)


def _dlq_commands(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="events that failed every retry (the events dead-letter queue)")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    peek = dlq_actions.add_parser("list", help="look at the DLQ without taking anything")
    peek.add_argument("--limit", type=int, default=20)
    peek.set_defaults(run=_dlq_list)
    redrive = dlq_actions.add_parser("replay", help="send failed events back through the worker, with lineage")
    redrive.add_argument("--limit", type=int, default=10)
    redrive.add_argument("--note", help="why (kept in replay_log)")
    redrive.add_argument("--by", help="who (default: user@host)")
    redrive.set_defaults(run=_dlq_replay)


if __name__ == "__main__":
    sys.exit(main())
