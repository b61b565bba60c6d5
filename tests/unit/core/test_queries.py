"""The named SQL queries: unique names, parameters bound by the driver, never formatted in."""

from __future__ import annotations

import re

from exactly_once.core import queries


def test_every_named_query_is_unique_and_parameterised():
    found = queries._all()
    assert "mail_apply" in found and "quarantine_put" in found
    for name, sql in found.items():
        assert not re.search(r"\{[a-z_0-9]*\}", sql.replace("'{}'", "")), f"{name} looks like a format string"
        assert re.search(r"%\(\w+\)s|^[^%]*$", sql, re.S), name
