"""Unipile: an inbound LinkedIn message is recorded once (linkedin_messages, one row per provider message)."""

from exactly_once.core.declaration import Flow, Provider, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="unipile",
    providers=(
        Provider(
            "unipile",
            route="/webhooks/unipile",
            adapter=part("adapter:UnipileAdapter.from_env"),
            processor=part("processor:process"),
            tracer=part("trace:effects"),
        ),
    ),
)
