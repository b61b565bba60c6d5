"""WhatsApp Cloud API: an inbound message is stored once and gets one bot reply (through the send queue).

``adapter`` (verify-token handshake, X-Hub-Signature-256, up to 1000 changes per POST), ``messages``
(parsing), ``store`` (messages and delivery states), ``responders`` (the bot), ``processor``.
"""

from exactly_once.core.declaration import Flow, Provider, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="whatsapp",
    providers=(
        Provider(
            "whatsapp",
            route="/webhooks/whatsapp",
            adapter=part("adapter:WhatsAppAdapter.from_env"),
            processor=part("processor:process"),
            tracer=part("trace:effects"),
        ),
    ),
)
