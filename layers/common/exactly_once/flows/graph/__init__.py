"""Microsoft Graph: a new mail becomes one helpdesk ticket (or one comment on its thread's ticket).

``adapter`` (validation handshake, clientState per item), ``processor`` (fetch the mail, apply it),
``client`` (Graph API), ``tickets`` (the effect in Postgres), ``trace`` (an event's ticket).
"""

from exactly_once.core.declaration import Flow, Provider, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="graph",
    providers=(
        Provider(
            "graph",
            route="/webhooks/graph",
            adapter=part("adapter:GraphAdapter.from_env"),
            processor=part("processor:process"),
            batch_processor=part("processor:process_batch"),
            tracer=part("trace:effects"),
            rebuild=part("adapter:rebuild"),
        ),
    ),
)
