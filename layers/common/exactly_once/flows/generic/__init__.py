"""Standard Webhooks, Stripe, GitHub and Slack: each event recorded once in event_log (the effect to build on).

One adapter module per protocol; the four share ``processor`` and one ingest function (GenericIngestFunction).
"""

from exactly_once.core.declaration import Flow, Provider, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="generic",
    providers=(
        Provider(
            "standard",
            route="/webhooks/standard/{source}",
            adapter=part("standard:StandardWebhooksAdapter.from_env"),
            processor=part("processor:process"),
            gauged=False,
        ),
        Provider(
            "stripe",
            route="/webhooks/stripe",
            adapter=part("stripe:StripeAdapter.from_env"),
            processor=part("processor:process"),
            gauged=False,
        ),
        Provider(
            "github",
            route="/webhooks/github",
            adapter=part("github:GitHubAdapter.from_env"),
            processor=part("processor:process"),
            gauged=False,
        ),
        Provider(
            "slack",
            route="/webhooks/slack",
            adapter=part("slack:SlackAdapter.from_env"),
            processor=part("processor:process"),
            gauged=False,
        ),
    ),
)
