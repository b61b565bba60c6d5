"""LiveKit: room_finished becomes one LLM analysis of the room (a leased claim per room).

``adapter`` (JWT over the body's sha256), ``processor`` (claim, call the LLM, complete on the claim),
``feedback`` (the claims in Postgres), ``reaper`` (re-drives claims whose lease ran out), ``llm_client``.
"""

from exactly_once.core.declaration import Flow, Provider, Reaper, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="livekit",
    providers=(
        Provider(
            "livekit",
            route="/webhooks/livekit",
            adapter=part("adapter:LiveKitAdapter.from_env"),
            processor=part("processor:process"),
            tracer=part("trace:effects"),
        ),
    ),
    reapers=(
        Reaper("livekit_feedback", part("reaper:reap"), reclaims=True),
        Reaper("livekit_late_feedback", part("reaper:redrive_late_rows")),
    ),
)
