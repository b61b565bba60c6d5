"""Per-user mailbox jobs: at most one pending job per user, each mail processed once.

``jobs`` (the job rows and their messages), ``scheduling`` (the trigger and the scheduler's tick),
``worker`` (claim a job, read the mailbox), ``imap`` (the IMAP client).
"""

from exactly_once.core.declaration import Flow, Provider, Reaper, parts_of

part = parts_of(__name__)

FLOW = Flow(
    name="mailbox",
    providers=(Provider("mailbox"),),
    reapers=(Reaper("mailbox_jobs", part("jobs:expire_stale"), reclaims=True),),
    key_tracers={"mbx-": part("trace:job")},
)
