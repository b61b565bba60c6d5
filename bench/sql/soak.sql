-- name: stack_connections
-- The stack's connections to its own database (the soak's own sessions carry application_name eo-soak).
SELECT count(*) AS total,
       count(*) FILTER (WHERE state = 'active') AS active,
       count(*) FILTER (WHERE state LIKE 'idle%%') AS idle
FROM pg_stat_activity
WHERE datname = %(db)s AND application_name <> 'eo-soak';
