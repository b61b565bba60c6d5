"""The whole bundle on one machine: embedded AWS, Postgres, the template's routes, pollers and schedules.

``LocalStack(StackConfig(...)).start()`` brings everything up in this process;
``make run`` (devstack.run) serves it until Ctrl-C, ``make demo`` and the tests
start one when none is running.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from devstack import emf_relay, env_local, moto_state, naive, postgres_local
from devstack.aws_local import CREDENTIALS, REGION, LocalAws, boto_client
from devstack.fakes import DEFAULT_CREDENTIALS, FakeProviders
from devstack.functions_host import FunctionHost
from devstack.gateway import Answer, Gateway, json_answer
from devstack.lambda_runtime import add_code_paths, function_timeout
from devstack.moto_process import MotoProcess
from devstack.moto_server import SerializedMotoServer
from devstack.poller import QueuePoller
from devstack.queries import q
from devstack.routes import QueueSource, ScheduleSource, http_routes, queue_sources, schedules
from devstack.schedule_timer import ScheduleTimer, scheduled_event
from devstack.template import ROOT, Template

log = logging.getLogger("devstack")

APP_SECRET_NAME = "exactly-once-local/app"  # noqa: S105 - a secret's name, not its value
DB_SECRET_NAME = "exactly-once-local/db"  # noqa: S105


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


#: What ``make run`` paces sends with (sends/pacing.PacingRule fields): no holding back.
LOCAL_PACING = {"daily_cap": 100000, "weekly_cap": None, "min_spacing_seconds": 0, "max_spacing_seconds": None,
                "work_start": None, "work_end": None}  # fmt: skip
#: The mailbox ``make run`` watches (its GraphMailboxes): the manager subscribes it once at start.
LOCAL_GRAPH_MAILBOX = "demo@exactly-once.local"


@dataclass
class StackConfig:
    port: int = 3000
    moto_port: int | None = None  # default: port + 1, fixed so env.local.json stays valid
    host: str = "127.0.0.1"
    fresh: bool = False
    state_dir: Path = ROOT / ".local"
    env_file: Path = env_local.ENV_FILE
    database_url: str | None = None
    db_name: str = "exactly_once"
    retry_delay: int = 1  # seconds before a failed message is visible again (Lambda: the visibility timeout)
    pollers_per_source: int = 1
    run_schedules: bool = True
    snapshot_every: float = 30.0
    pg_probe: str = "127.0.0.1:5432"  # where a local Postgres is looked for before the embedded one
    moto_in_thread: bool = False  # default: a process of its own (its own interpreter lock)
    # Lambda's account concurrency, locally: containers (each one connection) across every function.
    # None: half the connections the database has free at start, at most 40.
    account_concurrency: int | None = None
    container_wait_s: float = 30.0  # how long an invocation waits for a container before a 429

    @classmethod
    def from_env(cls) -> StackConfig:
        port = int(os.environ.get("PORT") or 3000)
        return cls(
            port=port,
            moto_port=int(os.environ["MOTO_PORT"]) if os.environ.get("MOTO_PORT") else None,
            fresh=_flag("FRESH"),
            state_dir=Path(os.environ.get("LOCAL_STATE_DIR") or ROOT / ".local"),
            env_file=Path(os.environ.get("ENV_LOCAL_FILE") or env_local.ENV_FILE),
            database_url=os.environ.get("DATABASE_URL") or None,
            db_name=os.environ.get("LOCAL_DB_NAME") or "exactly_once",
            retry_delay=int(os.environ.get("LOCAL_RETRY_DELAY") or 1),
            pollers_per_source=int(os.environ.get("LOCAL_POLLERS") or 1),
            run_schedules=not _flag("LOCAL_NO_SCHEDULES"),
            moto_in_thread=os.environ.get("LOCAL_MOTO") == "thread",
            pg_probe=os.environ.get("LOCAL_PG_PROBE") or "127.0.0.1:5432",
            account_concurrency=int(os.environ["LOCAL_CONCURRENCY"]) if os.environ.get("LOCAL_CONCURRENCY") else None,
        )


@dataclass
class LocalStack:
    config: StackConfig
    template: Template = field(default_factory=Template.load)
    aws: LocalAws | None = None
    database: postgres_local.LocalDatabase | None = None
    env: dict[str, str] = field(default_factory=dict)
    _moto: SerializedMotoServer | MotoProcess | None = None
    _emf: emf_relay.EmfRelay | None = None
    _gateway: Gateway | None = None
    _fakes: FakeProviders | None = None
    _functions: FunctionHost | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _timers: list[ScheduleTimer] = field(default_factory=list)
    _pollers: list[QueuePoller] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        port = self._gateway.port if self._gateway else self.config.port
        return f"http://{self.config.host}:{port}"

    @property
    def snapshot_path(self) -> Path:
        return self.config.state_dir / "aws-state.json"

    # -- start ------------------------------------------------------------------------
    def start(self) -> LocalStack:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        add_code_paths(self.template)  # the layer and the function folders, as Lambda mounts them
        moto_port = cfg.moto_port if cfg.moto_port is not None else cfg.port + 1
        if cfg.moto_in_thread:
            self._moto = SerializedMotoServer(cfg.host, moto_port).start()
        else:
            self._moto = MotoProcess(cfg.host, moto_port).start()
        self.aws = LocalAws(self._moto.url, self.template).provision()
        # Lambda's log pipeline, locally: the EMF lines functions print become moto metrics (the console reads them).
        self._emf = emf_relay.install(self.aws.endpoint)
        if cfg.fresh:
            self.snapshot_path.unlink(missing_ok=True)
        restored = moto_state.load(self.aws, self.snapshot_path)
        if any(restored.values()):
            log.info("restored %(items)s dedup records and %(messages)s queued messages", restored)

        self.database = postgres_local.resolve(
            cfg.database_url, state_dir=cfg.state_dir, db_name=cfg.db_name, fresh=cfg.fresh, probe=cfg.pg_probe
        )
        applied = postgres_local.migrate(self.database.url)
        log.info("postgres (%s): migrations applied now: %s", self.database.source, ", ".join(applied) or "none")
        naive.ensure_schema(self.database.url)

        # The gateway binds first: the fake providers' URLs carry its port.
        self._fakes = FakeProviders(cfg.host, 0)
        self._functions = FunctionHost(self.template, account_limit=self._account_limit(), wait_s=cfg.container_wait_s)
        self._gateway = Gateway(cfg.host, cfg.port, http_routes(self.template), self._functions, self._fakes)
        self._write_env()
        # The fakes refuse a call without the credential the functions were given (env.local.json's).
        self._fakes.credentials.update({k: self.env[k] for k in DEFAULT_CREDENTIALS if self.env.get(k)})
        self._gateway.local.update(self._local_endpoints())
        naive.install(self._gateway, self.env, self._functions.containers)

        self._spawn("gateway", self._gateway.serve_forever)
        for source in queue_sources(self.template):
            if source.enabled:
                for i in range(max(1, min(cfg.pollers_per_source, source.max_concurrency or 1_000))):
                    self._spawn(f"poller:{source.function}:{i}", self._poll_loop, source)
        if cfg.run_schedules:
            for schedule in schedules(self.template):
                if schedule.enabled:
                    self._timers.append(ScheduleTimer(schedule.name, schedule.expression, self._fire(schedule)).start())
        self._spawn("snapshot", self._snapshot_loop)
        self._manage_graph_subscriptions()
        self._ready.set()
        return self

    def _manage_graph_subscriptions(self) -> None:
        """The Graph subscription manager once now, so the local mailbox's subscription exists after start."""
        assert self._functions is not None
        if "GraphSubscriptionsFunction" not in self.template.functions():
            return
        event = scheduled_event("graph-subscriptions-at-start", None, dt.datetime.now(dt.UTC))
        try:
            result = self._functions.invoke("GraphSubscriptionsFunction", event)
            log.info("graph subscriptions at start: %s", result)
        except Exception:
            log.error("graph subscription manager at start failed:\n%s", traceback.format_exc())

    def _account_limit(self) -> int:
        if self.config.account_concurrency:
            return self.config.account_concurrency
        assert self.database is not None
        with psycopg.connect(self.database.url, autocommit=True) as conn:
            row = conn.execute(q("free_connections")).fetchone()
        free = int(row[0]) if row else 20
        limit = max(4, min(40, free // 2))
        log.info("account concurrency %d (Postgres has %d connections free; LOCAL_CONCURRENCY sets it)", limit, free)
        return limit

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- environment ------------------------------------------------------------------
    def _write_env(self) -> None:
        """env.local.json (sam local format), then this process's environment from it."""
        assert self.aws is not None and self.database is not None
        existing = env_local.load(self.config.env_file).get("Parameters", {})
        secrets = {
            name: existing.get(name) or env_local.dev_value(name, example)
            for name, example in env_local.secret_names().items()
        }
        secrets = {k: v for k, v in secrets.items() if v}  # configuration read through get_secret, not a secret
        base = f"{self.url}/fake"
        parameters = {
            **secrets,
            "AWS_ENDPOINT_URL": self.aws.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "DATABASE_URL": self.database.url,
            "GRAPH_BASE_URL": f"{base}/graph/v1.0",
            "GRAPH_TOKEN_URL": f"{base}/graph/token",
            "GRAPH_NOTIFICATION_URL": f"{self.url}/webhooks/graph",  # the fake's handshake reaches the gateway
            "LLM_BASE_URL": f"{base}/openai/v1",
            "WHATSAPP_BASE_URL": f"{base}/whatsapp",
            "UNIPILE_BASE_URL": f"{base}/unipile",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "false",  # the EMF relay takes the blobs off stdout, into moto
            "MAILBOX_ALLOW_PLAINTEXT_IMAP": "true",  # local development only: the template never sets it
            # The local stack storms many sends per account: LinkedIn's real pacing (sends/pacing.py: 2-5 minutes
            # apart, working hours) would make a demo wait for hours. A deployed stack keeps the real defaults.
            "SEND_PACING": json.dumps({"unipile": LOCAL_PACING, "whatsapp": LOCAL_PACING}),
        }
        # The app secret also carries the fakes' URLs: `sam local` passes only declared variables,
        # and the library reads LLM_BASE_URL and friends through get_secret.
        urls = {k: v for k, v in parameters.items() if k.endswith(("_BASE_URL", "_TOKEN_URL"))}
        template_params = {**self._secrets_in_moto({**secrets, **urls}), "GraphMailboxes": LOCAL_GRAPH_MAILBOX}
        wanted: dict[str, dict[str, str]] = {"Parameters": parameters}
        for function in self.template.functions():
            resolved = self.aws.function_env(function, template_params)
            # Locally IMAP passwords (IMAP_PASSWORD_*) come from env.local.json, not from a secret.
            resolved.pop("IMAP_SECRET_ARN", None)
            # Locally the WhatsApp number answers with the echo bot, by name (a deployed stack whose
            # WhatsAppResponder is empty answers nobody: issue 16). A bot the user put here stays.
            if "WHATSAPP_RESPONDER" in resolved and not resolved["WHATSAPP_RESPONDER"]:
                resolved["WHATSAPP_RESPONDER"] = "exactly_once.flows.whatsapp.responders:EchoResponder"  # its ECHO
            wanted[function] = {k: v for k, v in resolved.items() if k not in parameters}
        data = env_local.merge(self.config.env_file, wanted, self.config.state_dir / "env.generated.json")
        merged: dict[str, str] = {}
        conflicts: set[str] = set()
        for function in self.template.functions():
            for key, value in env_local.function_env(data, function).items():
                if key in merged and merged[key] != value:
                    conflicts.add(key)
                merged.setdefault(key, value)
        if conflicts:
            # One process hosts every function: a variable two functions set differently takes the first value.
            log.warning("functions disagree on %s; in-process they share the first value", ", ".join(sorted(conflicts)))
        self.env = merged
        os.environ.update(merged)

    def _secrets_in_moto(self, secrets: dict[str, str]) -> dict[str, str]:
        """The template's AppSecretArn and DatabaseSecretArn, as secrets in the embedded Secrets Manager."""
        assert self.aws is not None and self.database is not None
        client = boto_client("secretsmanager", self.aws.endpoint)
        parts = urlsplit(self.database.url)
        db_doc = {
            "engine": "postgres",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "username": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
            "dbname": parts.path.lstrip("/") or "postgres",
        }
        arns = {}
        for param, name, doc in (
            ("AppSecretArn", APP_SECRET_NAME, secrets),
            ("DatabaseSecretArn", DB_SECRET_NAME, db_doc),
        ):
            try:
                arn = client.create_secret(Name=name, SecretString=json.dumps(doc))["ARN"]
            except client.exceptions.ResourceExistsException:
                arn = client.put_secret_value(SecretId=name, SecretString=json.dumps(doc))["ARN"]
            arns[param] = arn
        return arns

    # -- pollers and schedules --------------------------------------------------------
    def _poll_loop(self, source: QueueSource) -> None:
        assert self.aws is not None and self._functions is not None
        functions = self._functions
        poller = QueuePoller(
            sqs=boto_client("sqs", self.aws.endpoint),
            queue_url=self.aws.physical[source.queue],
            queue_arn=self.aws.arns[source.queue],
            handler=lambda event, _ctx: functions.invoke(source.function, event),
            function_name=source.function,
            batch_size=source.batch_size,
            timeout_s=function_timeout(source.function, self.template),
            retry_delay=self.config.retry_delay,
            report_failures=source.report_failures,
        )
        self._pollers.append(poller)
        idle = 0.02
        while not self._stop.is_set():
            try:
                # Never long-poll: moto would hold the serialising lock for the whole wait.
                n = poller.poll_once(wait_seconds=0)
            except Exception:
                log.error("poller %s failed:\n%s", source.function, traceback.format_exc())
                n = 0
                idle = 1.0
            if n:
                idle = 0.02
                continue
            self._stop.wait(idle)
            idle = min(idle * 2, 0.5)

    def _fire(self, schedule: ScheduleSource) -> Any:
        def fire(now: dt.datetime) -> None:
            assert self._functions is not None
            try:
                self._functions.invoke(schedule.function, scheduled_event(schedule.name, schedule.input, now))
            except Exception:
                log.error("schedule %s failed:\n%s", schedule.name, traceback.format_exc())

        return fire

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.config.snapshot_every):
            self.save_snapshot()

    def save_snapshot(self) -> None:
        if self.aws is None:
            return
        try:
            moto_state.save(self.aws, self.snapshot_path)
        except Exception:  # a snapshot must never take the stack down
            log.warning("AWS snapshot failed:\n%s", traceback.format_exc())

    # -- /local endpoints ---------------------------------------------------------------
    def _local_endpoints(self) -> dict[tuple[str, str], Any]:
        return {
            ("GET", "/local/effects"): lambda *_: json_answer(200, self._fakes.effects() if self._fakes else []),
            ("GET", "/local/state"): lambda *_: json_answer(200, self.state()),
            # 503 until start() is done (the Graph manager's first run included): a launcher waits for it.
            ("GET", "/local/health"): lambda *_: json_answer(
                200 if self._ready.is_set() else 503, {"ok": self._ready.is_set()}
            ),
            ("GET", "/local/routes"): lambda *_: self._routes_answer(),
        }

    def _routes_answer(self) -> Answer:
        assert self._gateway is not None
        return json_answer(
            200,
            [{"route": r.route_key, "function": r.function, "authorizer": r.authorizer} for r in self._gateway.routes],
        )

    def state(self) -> dict[str, Any]:
        assert self.aws is not None and self.database is not None
        return {
            "queues": self.queue_depths(),
            "aws": dict(self._moto.stats) if self._moto else {},
            **self._postgres_state(),
            "pollers": {p.function_name: dict(p.stats) for p in self._pollers},
            "functions": self._functions.stats if self._functions else {},
            "containers": self._functions.containers.snapshot() if self._functions else {},
            "schedules": {t.name: {"expression": t.expression, "ticks": t.ticks} for t in self._timers},
            "database": self.database.source,
        }

    def queue_depths(self) -> dict[str, dict[str, Any]]:
        assert self.aws is not None
        sqs = boto_client("sqs", self.aws.endpoint)
        queues = self.template.of_type("AWS::SQS::Queue")
        dlqs = {
            ((res.get("Properties") or {}).get("RedrivePolicy") or {})
            .get("deadLetterTargetArn", {})
            .get("Fn::GetAtt", [None])[0]
            for res in queues.values()
        }
        depths = {}
        for name in queues:
            attrs = sqs.get_queue_attributes(
                QueueUrl=self.aws.physical[name],
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            depths[name] = {
                "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
                "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
                "dead_letter_queue": name in dlqs,
            }
        return depths

    def _postgres_state(self) -> dict[str, Any]:
        assert self.database is not None
        with psycopg.connect(self.database.url, autocommit=True) as conn:
            outcomes: dict[str, dict[str, dict[str, int]]] = {}
            for provider, outcome, events, deliveries in conn.execute(q("state_event_log")):
                outcomes.setdefault(provider, {})[outcome] = {"events": events, "deliveries": int(deliveries)}
            quarantine = {status: n for status, n in conn.execute(q("state_quarantine"))}
            claims: dict[str, dict[str, int]] = {}
            for (table,) in conn.execute(q("state_status_tables")).fetchall():
                query = sql.SQL("SELECT status::text, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
                    sql.Identifier(table)
                )
                claims[table] = {str(s): int(n) for s, n in conn.execute(query)}
            graph = {str(m): str(sid) for m, sid in conn.execute(q("state_graph_subscriptions"))}
        return {
            "event_log": outcomes,
            "quarantine": {"open": quarantine.get("open", 0), "by_status": quarantine},
            "claims": claims,
            "graph_subscriptions": graph,
        }

    # -- stop ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        for timer in self._timers:
            timer.stop()
        if self._gateway is not None:
            self._gateway.shutdown()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.save_snapshot()
        if self._emf is not None:
            emf_relay.uninstall(self._emf)
        if self._functions is not None:
            self._functions.containers.close()
        if self._moto is not None:
            self._moto.stop()
        if self.database is not None:
            self.database.stop()
