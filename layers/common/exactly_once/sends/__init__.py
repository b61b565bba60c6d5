"""Outbound sends (POST /sends, WhatsApp bot replies): each sent once, or held for review.

``request`` (a send before it is queued: checks, key, policy), ``queue`` (the send rows, claims and
the outbox), ``delivery`` (claim -> provider -> fenced completion), ``channels`` (one sender per channel),
``reconcile`` (the reapers: leases, unknown outcomes, outbox),
``whatsapp_api`` and ``unipile_api`` (the provider clients).
"""

from exactly_once.core.declaration import Flow, Provider, Reaper, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="send_queue",
    providers=(Provider("send_queue"),),
    # In this order: dead claims -> unknown, unknown -> reconciled, outbox sweep, the gauge.
    reapers=(
        Reaper("send_leases", part("reconcile:expire_leases"), reclaims=True),
        Reaper("send_reconcile", part("reconcile:reconcile_unknown"), time_bounded=True),
        Reaper("send_outbox", part("reconcile:sweep_outbox")),
        Reaper("send_stuck", part("reconcile:stuck_rows")),
    ),
    key_tracers={"send:": part("trace:send")},
)
