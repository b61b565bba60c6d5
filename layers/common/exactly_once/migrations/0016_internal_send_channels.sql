-- Two channels the bundle queues for itself (never POST /sends): 'graph' (mark a ticketed mail as
-- read, flows/graph/mark_read.py) and 'forward' (a settled event to a downstream endpoint, signed
-- with Standard Webhooks, sends/forward.py). The column's inline CHECK from 0004 has Postgres'
-- generated name send_queue_channel_check.
ALTER TABLE send_queue DROP CONSTRAINT send_queue_channel_check;
ALTER TABLE send_queue ADD CONSTRAINT send_queue_channel_check
    CHECK (channel IN ('whatsapp', 'unipile', 'graph', 'forward'));
