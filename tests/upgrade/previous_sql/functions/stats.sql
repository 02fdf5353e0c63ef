CREATE OR REPLACE FUNCTION pgjobs.stats()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A snapshot of the jobs the caller may see, as one JSON object:
--   at             now()
--   queue          [{kind, status, target, jobs}] of the unfinished jobs
--                  (queued, running, paused), by kind, status and target
--   oldest_queued  {id, age_seconds, run_at} of the queued job due longest
--                  (run_at <= now()); null when none is due
--   running        [{id, kind, target, scope, done, total, rows_per_second,
--                  eta_seconds, worker, lease_expires_at,
--                  heartbeat_age_seconds, throttled}]:
--                  rows/s is done over the time since started_at; eta
--                  (seconds) needs a total and a rate; at most 100 jobs
--   throttled      [{id, kind, target, scope, status, reason, since}] jobs
--                  held by a throttle signal or waiting (checkpoint.throttled):
--                  running ones held, and queued ones handed back (their
--                  table held by another session, the DDL fence held past a
--                  commit, a throttled job released at its runner's deadline)
--   paused         [{id, kind, target, scope, since, done, total}]
--   leases_expiring [{id, kind, worker, lease_expires_at}] running jobs
--                  whose lease ends within 10 seconds (or has ended: the
--                  next prune or claim rescues them)
--   finished_last_hour [{kind, status, jobs}]
--   rows           {kind: {last_minute, last_hour}}: rows done, estimated
--                  per job by spreading its done count evenly over the
--                  time it ran (started_at to finished_at, or now)
--   client_bytes   [{role, kept_bytes, max_item_bytes_per_client,
--                  room_bytes, used}] each client's bytes kept against its
--                  ceiling, the most first (pgjobs._stats_client_bytes):
--                  an administrator's view; [] for a caller that may not
--                  read every client's total (a client: pgjobs.client_room)
-- SECURITY INVOKER on purpose, and no SECURITY DEFINER body: it reads
-- pgjobs.jobs as the caller, so the row policies of pgjobs.jobs (a client
-- sees the jobs it submitted and those of targets it may read, within
-- pgjobs.allowed_scopes) decide what it counts, exactly as for job rows.
-- Cost: only unfinished jobs (jobs_unfinished_idx) and jobs finished in the
-- last hour (jobs_finished_idx) are read, never the whole table; the oldest
-- due queued job is the first entry of jobs_queued_run_at_idx (migration
-- 0024), not a sort of every queued job. For a client the row policy's
-- lists (confined targets, allowed scopes) are made once per statement.
-- Locks nothing.
WITH active AS NOT MATERIALIZED (
    -- Not materialized: each part below reads the unfinished jobs it needs
    -- through jobs_unfinished_idx (status first), and a flood of queued jobs
    -- is never copied into a tuplestore (which spills past work_mem).
    SELECT j.id, j.kind, j.target, j.scope, j.status, j.done, j.total, j.run_at,
           j.started_at, j.updated_at, j.worker, j.lease_expires_at, j.heartbeat_at,
           j.checkpoint -> 'throttled' AS throttled,
           extract(epoch FROM now() - j.started_at) AS ran
      FROM pgjobs.jobs j
     WHERE j.status IN ('queued', 'running', 'paused')
), spans AS (
    -- The rows of each job spread evenly over the time it ran [e0, e1] (epoch
    -- seconds, float8: numeric arithmetic per row would cost more than the
    -- scan); a window's share is done * overlap / duration, or all of it for
    -- an instant run ending inside the window. One pass per source.
    SELECT a.kind, NULL::text AS status, a.done::float8 AS done,
           date_part('epoch', a.started_at) AS e0,
           date_part('epoch', CASE WHEN a.status = 'running' THEN now()
                                   ELSE a.updated_at END) AS e1
      FROM active a
     WHERE a.started_at IS NOT NULL AND a.done > 0
    UNION ALL
    SELECT j.kind, j.status, j.done::float8,
           date_part('epoch', coalesce(j.started_at, j.finished_at)),
           date_part('epoch', j.finished_at)
      FROM pgjobs.jobs j
     WHERE j.finished_at > now() - interval '1 hour'
), windows AS MATERIALIZED (
    SELECT w.kind, w.status, count(*) AS n,
           sum(w.done * CASE WHEN w.e1 <= w.e0 THEN (w.e1 > n.en - 60)::int
                             ELSE greatest(0, w.e1 - greatest(w.e0, n.en - 60))
                                  / (w.e1 - w.e0) END) AS last_minute,
           sum(w.done * CASE WHEN w.e1 <= w.e0 THEN (w.e1 > n.en - 3600)::int
                             ELSE greatest(0, w.e1 - greatest(w.e0, n.en - 3600))
                                  / (w.e1 - w.e0) END) AS last_hour
      FROM spans w, (SELECT date_part('epoch', now()) AS en) n
     GROUP BY w.kind, w.status
)
SELECT jsonb_build_object(
    'at', now(),
    'queue', coalesce((
        SELECT jsonb_agg(jsonb_build_object('kind', q.kind, 'status', q.status,
                                            'target', q.target::text, 'jobs', q.n)
                         ORDER BY q.kind, q.status, q.target::text)
          FROM (SELECT a.kind, a.status, a.target, count(*) AS n
                  FROM active a GROUP BY a.kind, a.status, a.target) q), '[]'::jsonb),
    'oldest_queued', (
        -- age_seconds null for a run_at of -infinity, which older releases
        -- accepted: now() - '-infinity' raises 22008, and one such
        -- row made every stats() call (the dashboard's, /metrics) fail.
        SELECT jsonb_build_object('id', a.id, 'run_at', a.run_at,
                                  'age_seconds', CASE WHEN isfinite(a.run_at) THEN
                                      round(extract(epoch FROM now() - a.run_at), 3) END)
          FROM active a
         WHERE a.status = 'queued' AND a.run_at <= now()
         ORDER BY a.run_at, a.id LIMIT 1),
    'running', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', r.id, 'kind', r.kind, 'target', r.target::text, 'scope', r.scope,
                   'done', r.done, 'total', r.total, 'rows_per_second', r.rate,
                   'eta_seconds', CASE WHEN r.total IS NOT NULL AND r.rate > 0
                                       THEN round(greatest(r.total - r.done, 0) / r.rate, 1) END,
                   'worker', r.worker, 'lease_expires_at', r.lease_expires_at,
                   'heartbeat_age_seconds', round(extract(epoch FROM
                       now() - coalesce(r.heartbeat_at, r.started_at)), 3),
                   'throttled', r.throttled) ORDER BY r.id)
          FROM (SELECT a.*, CASE WHEN a.ran > 0 THEN round(a.done / a.ran, 1) END AS rate
                  FROM active a WHERE a.status = 'running'
                 ORDER BY a.id LIMIT 100) r), '[]'::jsonb),
    'throttled', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', a.id, 'kind', a.kind, 'target', a.target::text, 'scope', a.scope,
                   'status', a.status,
                   'reason', a.throttled ->> 'reason', 'since', a.throttled -> 'since')
                   ORDER BY a.id)
          FROM active a
         WHERE a.status IN ('running', 'queued') AND jsonb_typeof(a.throttled) = 'object'),
        '[]'::jsonb),
    'paused', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', a.id, 'kind', a.kind, 'target', a.target::text, 'scope', a.scope,
                   'since', a.updated_at, 'done', a.done, 'total', a.total) ORDER BY a.id)
          FROM active a WHERE a.status = 'paused'), '[]'::jsonb),
    'leases_expiring', coalesce((
        SELECT jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind, 'worker', a.worker,
                                            'lease_expires_at', a.lease_expires_at)
                         ORDER BY a.lease_expires_at, a.id)
          FROM active a
         WHERE a.status = 'running' AND a.lease_expires_at < now() + interval '10 seconds'),
        '[]'::jsonb),
    'finished_last_hour', coalesce((
        SELECT jsonb_agg(jsonb_build_object('kind', w.kind, 'status', w.status, 'jobs', w.n)
                         ORDER BY w.kind, w.status)
          FROM windows w WHERE w.status IS NOT NULL), '[]'::jsonb),
    'rows', coalesce((
        SELECT jsonb_object_agg(k.kind, jsonb_build_object('last_minute', k.last_minute,
                                                           'last_hour', k.last_hour))
          FROM (SELECT w.kind, round(sum(w.last_minute))::bigint AS last_minute,
                       round(sum(w.last_hour))::bigint AS last_hour
                  FROM windows w GROUP BY w.kind) k), '{}'::jsonb),
    'client_bytes', pgjobs._stats_client_bytes());
$$;

COMMENT ON FUNCTION pgjobs.stats() IS
'A snapshot of the jobs the caller may see: queue depth by kind, status and target, the oldest '
'due queued job, running jobs with rows/s and ETA, throttled and paused jobs, leases expiring '
'soon, jobs finished in the last hour, rows done per kind in the last minute and hour, and (for '
'an administrator) each client''s bytes kept against max_item_bytes_per_client.';
