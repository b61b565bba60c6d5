"""fifo.group_id: the one rule for FIFO message groups, used by the adapters and by the queue."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from exactly_once.core.fifo import group_id


def test_parts_are_joined_and_empty_ones_left_out():
    assert group_id("stripe", "", "pi_1") == "stripe:pi_1"
    assert group_id("github", None, "octo/repo") == "github:octo/repo"
    assert group_id("p", 0) == "p:0"


def test_nothing_is_the_default_group():
    assert group_id() == group_id("") == group_id(None, "") == "default"


def test_a_group_sqs_takes_is_kept_readable():
    assert group_id("slack:T1:C1") == group_id("slack", "T1", "C1") == "slack:T1:C1"
    assert group_id("x" * 128) == "x" * 128


def test_any_other_group_is_its_sha256_so_odd_ids_neither_fail_nor_collide():
    odd = "unipile:chat:caf\u00e9 1"
    assert group_id("unipile", "chat", "caf\u00e9 1") == "h:" + hashlib.sha256(odd.encode()).hexdigest()
    assert group_id("a b") != group_id("a_b")  # the old replace-with-underscore rule merged these
    assert group_id("x" * 129).startswith("h:")


@given(st.lists(st.one_of(st.none(), st.text(max_size=200), st.integers()), max_size=4))
def test_groups_are_what_sqs_fifo_accepts_stable_and_idempotent(parts):
    gid = group_id(*parts)
    assert 1 <= len(gid) <= 128 and all("!" <= c <= "~" for c in gid)
    assert group_id(*parts) == gid
    assert group_id(gid) == gid  # the queue applies it again to the group an adapter made
