"""Pacing rules and each channel's defaults, from the environment (no database)."""

from __future__ import annotations

import json
from datetime import time

import pytest

from exactly_once.core.errors import ConfigurationError
from exactly_once.sends import pacing
from exactly_once.sends.pacing import PacingRule


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in ("SEND_PACING", "SEND_DAILY_CAP", "SEND_MIN_SPACING_MS"):
        monkeypatch.delenv(name, raising=False)


def test_linkedin_defaults_are_tens_a_day_minutes_apart_in_working_hours():
    rule = pacing.defaults("unipile")
    assert (rule.daily_cap, rule.weekly_cap) == (40, 150)
    assert (rule.min_spacing_seconds, rule.max_spacing_seconds) == (120, 300)
    assert (rule.work_start, rule.work_end, rule.work_days) == (time(9), time(18), (1, 2, 3, 4, 5))
    assert pacing.defaults("whatsapp") == PacingRule(daily_cap=1000)


def test_send_pacing_overrides_one_channels_fields(monkeypatch):
    fields = {"daily_cap": 80, "time_zone": "Europe/Paris", "work_start": "08:30", "work_days": [1, 2, 3]}
    monkeypatch.setenv("SEND_PACING", json.dumps({"unipile": fields}))
    rule = pacing.defaults("unipile")
    assert (rule.daily_cap, rule.time_zone, rule.work_start, rule.work_days) == (
        80,
        "Europe/Paris",
        time(8, 30),
        (1, 2, 3),
    )
    assert rule.weekly_cap == 150  # the fields not named keep the default
    assert pacing.all_defaults()["unipile"]["work_start"] == "08:30:00"


def test_the_older_variables_still_set_cap_and_minimum_spacing_and_minus_one_keeps_the_default(monkeypatch):
    monkeypatch.setenv("SEND_DAILY_CAP", "10")
    monkeypatch.setenv("SEND_MIN_SPACING_MS", "400000")
    rule = pacing.defaults("unipile")
    assert (rule.daily_cap, rule.min_spacing_seconds, rule.max_spacing_seconds) == (10, 400, 400)
    monkeypatch.setenv("SEND_DAILY_CAP", "-1")
    monkeypatch.setenv("SEND_MIN_SPACING_MS", "-1")
    assert pacing.defaults("unipile") == pacing.DEFAULTS["unipile"]


@pytest.mark.parametrize(
    "fields",
    [
        {"daily_cap": -1},
        {"work_start": "18:00", "work_end": "09:00"},
        {"work_start": "09:00", "work_end": None},
        {"work_days": [0]},
        {"hourly_cap": 5},
    ],
)
def test_unusable_rules_are_configuration_errors(fields):
    with pytest.raises(ConfigurationError):
        pacing.rule_from(fields, pacing.DEFAULTS["unipile"])


def test_send_pacing_that_is_not_json_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("SEND_PACING", "{daily_cap: 1")
    with pytest.raises(ConfigurationError):
        pacing.defaults("unipile")
