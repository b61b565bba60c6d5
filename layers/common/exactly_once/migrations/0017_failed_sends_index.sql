-- `exactly-once forward list` (ops/forward_cli.py) reads failed rows oldest first: an index on what it
-- filters and orders by, kept small by its predicate (failed rows only).
CREATE INDEX IF NOT EXISTS send_queue_failed_idx ON send_queue (status_changed_at, id) WHERE status = 'failed';
