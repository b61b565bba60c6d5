"""Every flow and provider of the bundle: the one list the handlers, worker, reapers, replay and trace read.

A new provider is a folder under ``flows/`` whose ``__init__`` declares its ``FLOW``, added here,
plus its route in template.yaml (CONTRIBUTING.md).
"""

from __future__ import annotations

from exactly_once import sends
from exactly_once.core.declaration import Flow, Provider, Reaper
from exactly_once.flows import generic, graph, livekit, mailbox, unipile, whatsapp

# The reapers run in this order: mailbox, LiveKit, then the send queue's four.
FLOWS: tuple[Flow, ...] = (
    graph.FLOW,
    mailbox.FLOW,
    livekit.FLOW,
    whatsapp.FLOW,
    unipile.FLOW,
    generic.FLOW,
    sends.FLOW,
)

PROVIDERS: dict[str, Provider] = {p.name: p for flow in FLOWS for p in flow.providers}
FLOW_OF: dict[str, Flow] = {p.name: flow for flow in FLOWS for p in flow.providers}


def provider(name: str) -> Provider | None:
    return PROVIDERS.get(name)


def reapers() -> list[tuple[Flow, Reaper]]:
    """Every flow's reapers, in the flows' order."""
    return [(flow, reaper) for flow in FLOWS for reaper in flow.reapers]
