"""The connection budget, checked at deploy against a real Postgres (ops/budget.py, the migration custom resource)."""

from __future__ import annotations

import pytest

from devstack.template import Template
from exactly_once.core.errors import ConfigurationError
from exactly_once.ops import budget
from exactly_once.ops.budget import Budget


def test_caps_over_the_budget_fail_naming_each_function():
    found = Budget({"EventWorkerFunction": 60, "SendWorkerFunction": 30}, budget=80).problems(200, 3, 10)
    assert len(found) == 1
    assert "add up to 90" in found[0] and "EventWorkerFunction 60" in found[0]


def test_a_budget_over_what_the_server_has_fails():
    found = Budget({"EventWorkerFunction": 10}, budget=80).problems(100, 3, 30)
    assert found == [
        "DbConnectionBudget 80 is over what the server has: max_connections 100 - 3 reserved for superusers "
        "- 30 held by other clients = 67"
    ]


def test_caps_within_a_budget_the_server_has_pass():
    assert Budget({"EventWorkerFunction": 20, "SendWorkerFunction": 10}, budget=40).problems(100, 3, 10) == []


def test_the_template_defaults_fit_their_own_budget():
    # GIVEN the caps the template passes to the migration custom resource, at their defaults
    template = Template.load()
    (schema,) = template.of_type("Custom::DatabaseSchema").values()
    props = {k: template.resolve(v) for k, v in schema["Properties"].items() if k != "ConcurrencyCaps"}
    props["ConcurrencyCaps"] = {k: template.resolve(v) for k, v in schema["Properties"]["ConcurrencyCaps"].items()}
    defaults = Budget.from_properties(props)
    # THEN they fit in DbConnectionBudget, which fits a stock Postgres (max_connections 100, 3 reserved)
    assert defaults.problems(100, 3, 0) == []
    # AND every DB-connected function with an SQS source or an API route is capped there
    assert {"EventWorkerFunction", "SendWorkerFunction", "JobWorkerFunction", "SendEnqueueFunction"} <= set(
        defaults.caps
    )


def test_check_reads_the_server_and_fails_the_deploy_when_the_caps_do_not_fit(db):
    # GIVEN the run's Postgres (its max_connections, whatever it is)
    max_connections = int(db.execute("SHOW max_connections").fetchone()[0])
    # WHEN the caps fit: the numbers come back for the deploy's outputs
    fits = budget.check(db, Budget({"EventWorkerFunction": 2}, budget=4))
    assert fits == {"ConnectionsNeeded": 2, "MaxConnections": max_connections}
    # WHEN the budget is more than the server has: the deploy fails, saying why
    with pytest.raises(ConfigurationError, match="over what the server has"):
        budget.check(db, Budget({"EventWorkerFunction": 2}, budget=max_connections))


def test_the_custom_resource_properties_arrive_as_strings():
    props = {"DbConnectionBudget": "80", "ConcurrencyCaps": {"EventWorkerFunction": "20"}, "ServiceToken": "arn"}
    assert Budget.from_properties(props) == Budget({"EventWorkerFunction": 20}, 80)
