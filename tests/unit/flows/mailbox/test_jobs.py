"""The one job identity of mailbox jobs: the scheduler and the trigger agree on it by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from exactly_once.flows.mailbox.jobs import Created, JobStatus, job_id, message, slot_of, user_key


def test_every_moment_of_a_slot_gives_the_same_job_id_and_the_next_slot_another():
    start = datetime(2026, 11, 22, 6, 5, tzinfo=UTC)
    ids = {job_id("42", slot_of(start + timedelta(seconds=s), 60)) for s in range(60)}
    assert ids == {"mbx-42-20261122T060500Z"}
    assert job_id("42", slot_of(start + timedelta(seconds=60), 60)) == "mbx-42-20261122T060600Z"


def test_the_slot_does_not_depend_on_the_callers_time_zone():
    utc = datetime(2026, 11, 22, 6, 5, 30, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert job_id("u", slot_of(utc, 60)) == job_id("u", slot_of(paris, 60))


@given(st.text(min_size=1, max_size=300))
def test_any_user_id_gives_a_valid_sqs_dedup_id_and_group(user_id):
    jid = job_id(user_id, datetime(2026, 1, 1, tzinfo=UTC))
    msg = message(Created(jid, user_id, datetime(2026, 1, 1, tzinfo=UTC)))
    for value in (msg["MessageDeduplicationId"], msg["MessageGroupId"]):
        assert 1 <= len(value) <= 128
        assert all(c.isascii() and (c.isalnum() or c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for c in value)


def test_distinct_unsafe_user_ids_get_distinct_keys():
    assert user_key("alice") == "alice"
    assert user_key("a b") != user_key("a  b")
    assert user_key("a b").startswith("h")


def test_status_flags_follow_the_one_pending_job():
    since = datetime(2026, 11, 22, tzinfo=UTC)
    running = JobStatus("u", True, True, "mbx-u-1", "running", since, None).as_dict()
    assert (running["has_running_job"], running["has_queued_job"], running["has_scheduled_job"]) == (True, False, False)
    assert running["since"] == since.isoformat()
    idle = JobStatus("u", True, True, None, None, None, None).as_dict()
    assert not any(idle[k] for k in ("has_running_job", "has_queued_job", "has_scheduled_job"))
