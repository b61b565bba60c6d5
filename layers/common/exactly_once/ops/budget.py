"""The connection budget: the DB-connected functions' concurrency caps against the database's connections.

Each concurrent invocation of a DB-connected function holds one Postgres connection (one per warm
container, ``core.db.connection``). Their caps (template parameters) must fit in the budget the
operator gives (``DbConnectionBudget``: the share of ``max_connections`` this stack may use, or the
proxy's) and in what the server itself has: ``max_connections`` less the superusers' reserve and the
connections other clients hold now. The migration custom resource checks both at every deploy and
fails the deployment, naming the numbers, when they do not fit (docs/capacity.md says how to size them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.errors import ConfigurationError

#: The server's own limit, and the connections held by clients other than this deploy's own one.
_SERVER = """
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())
"""


@dataclass(frozen=True)
class Budget:
    caps: Mapping[str, int]  # function -> its concurrency cap (connections at most)
    budget: int  # DbConnectionBudget

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> Budget:
        """From the custom resource's properties (CloudFormation passes every value as a string)."""
        caps = {str(name): int(value) for name, value in dict(props.get("ConcurrencyCaps") or {}).items()}
        return cls(caps, int(props["DbConnectionBudget"]))

    @property
    def needed(self) -> int:
        return sum(self.caps.values())

    def problems(self, max_connections: int, reserved: int, others: int) -> list[str]:
        """Why the caps do not fit; [] when they do."""
        found = []
        caps = ", ".join(f"{name} {cap}" for name, cap in sorted(self.caps.items()))
        if self.needed > self.budget:
            found.append(
                f"the concurrency caps add up to {self.needed} connections ({caps}), "
                f"over DbConnectionBudget {self.budget}"
            )
        available = max_connections - reserved - others
        if self.budget > available:
            found.append(
                f"DbConnectionBudget {self.budget} is over what the server has: max_connections {max_connections} "
                f"- {reserved} reserved for superusers - {others} held by other clients = {available}"
            )
        return found


def check(conn: psycopg.Connection[Any], budget: Budget) -> dict[str, Any]:
    """Raise ``ConfigurationError`` when the caps do not fit; else the numbers, for the deploy's outputs."""
    row = conn.execute(_SERVER).fetchone()
    if row is None:  # one aggregate row, always
        raise ConfigurationError("the database returned no connection settings")
    max_connections, reserved, others = (int(v) for v in row)
    problems = budget.problems(max_connections, reserved, others)
    if problems:
        raise ConfigurationError("connection budget: " + "; ".join(problems) + " (docs/capacity.md)")
    return {"ConnectionsNeeded": budget.needed, "MaxConnections": max_connections}
