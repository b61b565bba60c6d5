"""The operator CLI shows provider text escaped: nothing a sender wrote can drive the operator's terminal (issue 16)."""

from __future__ import annotations

import json

from exactly_once.ops import cli

# A sender controls these: the event key (a provider id), the reason (the provider's error text), the raw body.
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x1b[H"
C1 = "\x9b31m"
RTL = "invoice\u202efdp.exe"
HOSTILE = [TITLE, CLEAR, C1, RTL, "\r", "\u2028"]


def raw_controls(text: str) -> list[str]:
    return sorted({c for c in text if not (c.isprintable() or c in " \n")})


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def quarantine_hostile_row(db) -> int:
    key = "unipile:" + "".join(HOSTILE)
    row = db.execute(
        "INSERT INTO quarantine (provider, event_key, reason, raw) VALUES (%s, %s, %s, %s) RETURNING id",
        ("unipile" + TITLE, key, "provider said: " + CLEAR + C1 + RTL, json.dumps({"text": "".join(HOSTILE)})),
    ).fetchone()
    return int(row[0])


def test_quarantine_list_and_show_escape_control_characters(stack, db, capsys):
    # GIVEN a quarantined event whose key, provider and reason carry terminal escape sequences
    qid = quarantine_hostile_row(db)
    # WHEN the operator lists it (table and JSON) and shows it
    code, table, _ = run_cli(capsys, "quarantine", "list", "--status", "all")
    assert code == 0
    code, listed, _ = run_cli(capsys, "quarantine", "list", "--json")
    assert code == 0
    code, shown, _ = run_cli(capsys, "quarantine", "show", str(qid))
    assert code == 0
    # THEN no raw control or format character reaches the terminal, and the escapes say what was there
    for out in (table, listed, shown):
        assert raw_controls(out) == [], raw_controls(out)
    assert "\\x1b]0;pwned\\x07" in table and "\\u202e" in table
    # AND the JSON is still JSON, equal to the stored text
    (row,) = [r for r in json.loads(listed) if r["id"] == qid]
    assert row["reason"] == "provider said: " + CLEAR + C1 + RTL
    assert json.loads(shown)["event_key"] == "unipile:" + "".join(HOSTILE)


def test_error_messages_are_escaped_too(stack, capsys):
    _code, out, err = run_cli(capsys, "trace", "graph:" + TITLE + RTL)
    assert raw_controls(out + err) == []
