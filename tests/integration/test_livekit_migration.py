"""Migration 0003 on a database that already runs 0002 with rows in it (the seed's situation):
the enum gains 'processing' and 'failed', rows keep their data, and the claim works afterwards."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from exactly_once.flows.livekit import feedback
from exactly_once.ops import migrate
from tests.conftest import PG_ADMIN_URL

FILES_UP_TO_0002 = ("0001_core.sql", "0002_livekit_feedback.sql")


@pytest.fixture
def fresh_database():
    name = f"eo_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as conn:
        yield conn
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_0003_applies_on_an_existing_0002_database_with_rows(fresh_database, tmp_path: Path, monkeypatch):
    conn = fresh_database
    # GIVEN a database deployed up to 0002 (the seed's schema), in use
    for name in FILES_UP_TO_0002:
        shutil.copy(migrate.MIGRATIONS_DIR / name, tmp_path / name)
    real_dir = migrate.MIGRATIONS_DIR
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    assert migrate.migrate(conn) == ["0001_core", "0002_livekit_feedback"]
    conn.execute(
        "INSERT INTO user_feedback (room_sid, room_name, status, analysis) VALUES"
        " ('RM_old_done', 'a', 'completed', '{\"summary\": \"kept\"}'),"
        " ('RM_old_open', 'b', 'initiated', NULL), ('RM_old_drop', 'c', 'dropped', NULL)"
    )
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute("UPDATE user_feedback SET status = 'processing' WHERE room_sid = 'RM_old_open'")

    # WHEN the deploy runs the real migrations (0003 and whatever follows it)
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", real_dir)
    applied = migrate.migrate(conn)

    # THEN 0003 applied, the enum is in the seed's order plus 'failed', and the rows are intact
    assert "0003_livekit_feedback_claims" in applied
    labels = [r[0] for r in conn.execute("SELECT unnest(enum_range(NULL::feedback_status))::text")]
    assert labels == ["initiated", "completed", "processing", "dropped", "failed"]
    rows = conn.execute(
        "SELECT room_sid, status::text, attempts, claim_token, analysis FROM user_feedback ORDER BY room_sid"
    ).fetchall()
    assert rows == [
        ("RM_old_done", "completed", 0, None, {"summary": "kept"}),
        ("RM_old_drop", "dropped", 0, None, None),
        ("RM_old_open", "initiated", 0, None, None),
    ]
    # AND the pre-existing 'initiated' row can be claimed with the new status, once
    claim = feedback.claim_room(conn, "RM_old_open", None, lease=60)
    assert [c.attempts for c in claim.claims] == [1]
    assert feedback.claim_room(conn, "RM_old_open", None, lease=60).others == ["processing"]
    # AND 0003 is re-runnable as written (IF NOT EXISTS everywhere), e.g. after a half-applied deploy
    with conn.transaction():
        conn.execute((real_dir / "0003_livekit_feedback_claims.sql").read_text())
