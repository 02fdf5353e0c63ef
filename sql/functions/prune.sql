CREATE OR REPLACE FUNCTION pgjobs.prune(p_retention interval DEFAULT '24 hours')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Housekeeping, safe to run at any time and concurrently:
--   1. rescues jobs whose lease expired (retried, failed or canceled), and
--      fan-out items likewise (pgjobs._items_rescue);
--   2. deletes jobs that finished more than p_retention ago, the oldest
--      10,000 a call (each call is one transaction: a backlog of millions
--      in one DELETE ran for minutes, held back vacuum, and under a
--      statement_timeout was canceled at every call, pruning nothing ever
--      again; "more": true says jobs past the retention are left for the
--      next call, which `pgjobs prune` makes at once), queueing the
--      storage objects of pruned exports (every one they wrote: succeeded,
--      failed or canceled, pgjobs._export_objects) and the rejects object
--      of pruned imports in pgjobs.storage_deletions for a worker to delete,
--      and the upload leftovers of pruned exports (pgjobs._export_leftovers:
--      open multipart uploads, temporary files, staged parts);
--   3. trims pg_cron's run history (cron.job_run_details) of pgjobs' own
--      cron jobs older than p_retention: it grows without bound otherwise;
--   1b. cancels the writing jobs a client (not an administrator) paused
--      longer than set_defaults' max_client_pause ago
--      (pgjobs._expire_client_pauses): they hold their scope's later writers;
--   4. deletes the gate lock rows (pgjobs.scope_locks, pgjobs._lock_scope)
--      of scopes no writing job row is left of (the last pruned in step 1,
--      past p_retention), 10,000 a call, skipping those a submit holds: a submit makes one per (target,
--      scope) it ever wrote and kept it, so a client writing to ever new
--      scopes (each under its ceilings at any one time) grew the table
--      without end. A later submit of the scope makes its row again.
-- Returns a summary: {"rescued": {...}, "items_rescued": {...}, "deleted", "more",
-- "objects_queued", "leftovers_queued", "cron_runs_trimmed", "scope_locks_deleted",
-- "client_room_locks_deleted", "pauses_expired"}. Locks: the rows it changes or
-- deletes; a finished job's row another transaction holds (a retry in
-- flight) is skipped, so concurrent prunes never wait for each other.
DECLARE
    v_rescued jsonb;
    v_items jsonb;
    v_deleted bigint;
    v_batch constant integer := 10000;
    v_objects bigint;
    v_leftovers bigint;
    v_trimmed bigint := 0;
    v_scope_locks bigint;
    v_client_room_locks bigint;
    v_held oid[];
    v_pauses integer;
    -- pg_cron's own relations, read as found (by oid), never by name.
    v_runs regclass := pgjobs._cron_relation('job_run_details');
    v_jobs regclass := pgjobs._cron_relation('job');
BEGIN
    -- At most 1000 years: now() minus a longer one left the timestamp range
    -- (22008 "timestamp out of range", no hint, nothing rescued or pruned).
    IF p_retention IS NULL OR p_retention < interval '0' OR p_retention > interval '1000 years' THEN
        RAISE EXCEPTION 'retention must be an interval from 0 to 1000 years, not %', p_retention
            USING ERRCODE = '22023', HINT = 'For example ''24 hours''.';
    END IF;

    PERFORM pgjobs._engine_seen('prune');  -- what doctor sees of a pg_cron elsewhere
    v_rescued := pgjobs._rescue_expired();
    v_items := pgjobs._items_rescue();  -- fan-out items whose lease expired
    -- Writing jobs a client paused longer than max_client_pause: canceled.
    v_pauses := pgjobs._expire_client_pauses();

    -- The running totals of the clients whose jobs it deletes with bytes
    -- counted (pgjobs._give_back_kept_bytes gives them back): locked first,
    -- in submitter order, skipping any a transaction holds, and only those
    -- clients' counted jobs deleted. A client's transaction that holds its
    -- total (a large submit) and then locks one of its finished jobs
    -- (cancel, retry) would otherwise wait for prune while prune, holding
    -- that job, waited for its total: a deadlock (40P01). prune waits for
    -- no client; their jobs go at its next call.
    SELECT coalesce(array_agg(h.submitter_oid), '{}') INTO v_held
      FROM (SELECT l.submitter_oid FROM pgjobs.client_room_locks l
             WHERE l.submitter_oid IN (SELECT c.submitted_by_oid
                                         FROM (SELECT d.submitted_by_oid, d.kept_bytes
                                                 FROM pgjobs.jobs d
                                                WHERE d.finished_at < now() - p_retention
                                                ORDER BY d.finished_at
                                                LIMIT v_batch) c  -- the jobs it deletes
                                        WHERE c.kept_bytes <> 0)
             ORDER BY l.submitter_oid
               FOR NO KEY UPDATE SKIP LOCKED) h;

    WITH doomed AS (
        SELECT d.id FROM pgjobs.jobs d
         WHERE d.finished_at < now() - p_retention
           AND (coalesce(d.kept_bytes, 0) = 0 OR d.submitted_by_oid = ANY (v_held)
                OR NOT EXISTS (SELECT FROM pgjobs.client_room_locks l
                                WHERE l.submitter_oid = d.submitted_by_oid))
         ORDER BY d.finished_at
         LIMIT v_batch
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM pgjobs.jobs j
         USING doomed
         WHERE j.id = doomed.id
        RETURNING j.id, j.kind, j.status, j.result, j.checkpoint
    ), objects AS (
        -- Every object the export wrote, whatever way it ended: result.uris
        -- (or its one result.uri), and every object its checkpoint and its
        -- parts' record (pgjobs._export_objects). A canceled export or one
        -- that failed for good without a worker to clean up (SIGKILLed,
        -- rescued by pgjobs._rescue_expired) has no result, but its Parquet
        -- files and part objects are there: nothing else ever removes them.
        -- Read from the statement's snapshot: the parts' rows, which the
        -- DELETE above cascades to, are still seen.
        INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
        SELECT o.uri, g.id, NULL::jsonb
          FROM gone g
         CROSS JOIN LATERAL pgjobs._export_objects(g.id, g.result, g.checkpoint) o(uri)
         WHERE g.kind = 'export'
        UNION ALL
        -- The key of an object an export (or a part of one) was finishing
        -- (phase `finalizing`) without a record that its write made it
        -- (`created`, `sha256`: pgjobs._export_objects takes those): a
        -- worker killed between its conditional write and that record. It
        -- is queued with the part digests checkpointed as the parts were
        -- streamed, and the worker deletes the object only if it reads back
        -- as exactly those bytes; anything else there is another's.
        SELECT DISTINCT c.ck ->> 'uri', g.id,
               jsonb_build_object('export_digests', c.ck -> 'digests')
          FROM gone g
         CROSS JOIN LATERAL (SELECT g.checkpoint
                             UNION ALL
                             SELECT p.checkpoint FROM pgjobs.export_parts p
                              WHERE p.job_id = g.id) c(ck)
         WHERE g.kind = 'export'
           AND jsonb_typeof(c.ck) = 'object'
           AND c.ck ->> 'phase' = 'finalizing'
           AND jsonb_typeof(c.ck -> 'digests') = 'array'
           AND jsonb_array_length(c.ck -> 'digests') > 0
           AND jsonb_typeof(c.ck -> 'created') IS DISTINCT FROM 'object'
           AND jsonb_typeof(c.ck -> 'sha256') IS DISTINCT FROM 'string'
           AND coalesce(c.ck ->> 'uri', '') <> '' AND right(c.ck ->> 'uri', 1) <> '/'
        UNION ALL
        -- A Parquet file the export (or a part of one) may have made without
        -- recording it: the one it was writing (`writing`, with the digest of
        -- its bytes: a worker killed between the conditional write and the
        -- record), and those the read-back dropped (`unrecorded`). Queued
        -- with that digest: the worker deletes the file only if it holds
        -- exactly those bytes; anything else at the name is another's. A
        -- name without a digest (a release before this one recorded it so)
        -- proves nothing and is not queued.
        SELECT DISTINCT u.uri, g.id, jsonb_build_object('object_sha256', u.sha256)
          FROM gone g
         CROSS JOIN LATERAL (SELECT g.checkpoint
                             UNION ALL
                             SELECT p.checkpoint FROM pgjobs.export_parts p
                              WHERE p.job_id = g.id) c(ck)
         CROSS JOIN LATERAL (SELECT c.ck ->> 'writing', c.ck ->> 'writing_sha256'
                              WHERE jsonb_typeof(c.ck -> 'writing') = 'string'
                                AND jsonb_typeof(c.ck -> 'writing_sha256') = 'string'
                             UNION ALL
                             SELECT f.value ->> 'uri', f.value ->> 'sha256'
                               FROM jsonb_array_elements(
                                        CASE WHEN jsonb_typeof(c.ck -> 'unrecorded') = 'array'
                                             THEN c.ck -> 'unrecorded'
                                             ELSE '[]'::jsonb END) f
                              WHERE jsonb_typeof(f.value) = 'object'
                                AND jsonb_typeof(f.value -> 'sha256') = 'string') u(uri, sha256)
         WHERE g.kind = 'export'
           AND jsonb_typeof(c.ck) = 'object'
           AND coalesce(u.uri, '') <> '' AND right(u.uri, 1) <> '/'
        UNION ALL
        -- An import's rejects object (succeeded or failed): the rejected
        -- lines' text, kept until the job is pruned. Only one the job
        -- provably wrote: the one its checkpoint records as created
        -- (`rejects_created`, pgjobs.import_rejects_created: its
        -- conditional create succeeded; recorded even when a retry cleared
        -- the result or a rescue failed the job before its result named
        -- it), and the one its result names (written before the result
        -- named it). A name the checkpoint holds without that record
        -- (`rejects_uri` alone: a worker killed after naming it, before
        -- its create or after a create that found another pgjobs
        -- database's object there) is never queued as it is: it may be
        -- another's. When the checkpoint holds the digest of the bytes the
        -- job was creating there (`rejects_sha256`,
        -- pgjobs.import_rejects_creating: killed after its create, before
        -- recording it), it is queued with that digest, and the worker
        -- deletes it only if it holds exactly those bytes.
        SELECT DISTINCT r.uri, g.id, r.upload
          FROM gone g
         CROSS JOIN LATERAL (VALUES
                 (CASE WHEN jsonb_typeof(g.checkpoint -> 'rejects_created') = 'string'
                            AND g.checkpoint ->> 'rejects_created'
                                = g.checkpoint ->> 'rejects_uri'
                       THEN nullif(g.checkpoint ->> 'rejects_created', '') END, NULL::jsonb),
                 (CASE WHEN jsonb_typeof(g.result -> 'rejects_uri') = 'string'
                       THEN nullif(g.result ->> 'rejects_uri', '') END, NULL::jsonb),
                 (CASE WHEN jsonb_typeof(g.checkpoint -> 'rejects_uri') = 'string'
                            AND jsonb_typeof(g.checkpoint -> 'rejects_sha256') = 'string'
                            AND g.checkpoint ->> 'rejects_created'
                                IS DISTINCT FROM g.checkpoint ->> 'rejects_uri'
                            AND g.result ->> 'rejects_uri'
                                IS DISTINCT FROM g.checkpoint ->> 'rejects_uri'
                       THEN nullif(g.checkpoint ->> 'rejects_uri', '') END,
                  jsonb_build_object('rejects_sha256', g.checkpoint -> 'rejects_sha256'))
                 ) r(uri, upload)
         WHERE g.kind = 'import' AND r.uri IS NOT NULL
        RETURNING 1
    ), leftovers AS (
        -- The upload leftovers its checkpoint and its parts' name (an open
        -- multipart upload, a temporary file, staged parts:
        -- pgjobs._export_leftovers): a job that failed out of attempts
        -- kept them for pgjobs.retry, and a sweep of a destination other
        -- than a worker's --storage reads the jobs table, where a pruned
        -- export no longer is. Not a succeeded one's: its uploads became
        -- its objects, and its worker removed the rest.
        INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
        SELECT l.uri, g.id, l.upload
          FROM gone g
         CROSS JOIN LATERAL pgjobs._export_leftovers(g.id, g.checkpoint) l
         WHERE g.kind = 'export' AND g.status <> 'succeeded'
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM objects),
           (SELECT count(*) FROM leftovers)
      INTO v_deleted, v_objects, v_leftovers;

    IF v_runs IS NOT NULL AND v_jobs IS NOT NULL
       AND has_table_privilege(v_runs, 'DELETE') THEN
        -- By command as well as by job: schedule() re-creates the cron jobs
        -- under new ids, and unschedule() drops them, orphaning old history.
        EXECUTE format($q$
            DELETE FROM %s d
             WHERE d.end_time < now() - $1
               AND (d.jobid IN (SELECT c.jobid FROM pgjobs._cron_jobs() c)
                    OR ((d.command LIKE 'CALL pgjobs.run(%%'
                         OR d.command LIKE 'SELECT pgjobs.prune(%%')
                        AND pgjobs._engine_runner(d.username::text)))
        $q$, v_runs) USING p_retention;
        GET DIAGNOSTICS v_trimmed = ROW_COUNT;
    END IF;

    -- A row is only a mutex: deleting one no submit holds loses nothing (a
    -- submit waiting for it finds it gone and makes it again). Only the rows
    -- of scopes no writing job row is left of (all pruned above, past the
    -- retention): a submit in a REPEATABLE READ or SERIALIZABLE transaction
    -- whose snapshot still shows a row deleted since fails with 40001 at
    -- pgjobs._lock_scope, so a scope written to within the retention keeps
    -- its row, finished writers or not.
    DELETE FROM pgjobs.scope_locks l
     WHERE l.ctid IN (SELECT s.ctid FROM pgjobs.scope_locks s
                       WHERE NOT EXISTS (SELECT FROM pgjobs.jobs j
                                          WHERE j.target = s.target AND j.scope = s.scope
                                            AND j.writes)
                       LIMIT v_batch
                         FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_scope_locks = ROW_COUNT;

    -- Likewise a client's row of pgjobs.client_room_locks (its ceilings'
    -- lock, pgjobs._lock_client_room: made the first time the client came
    -- near a ceiling or submitted two jobs in one transaction, and kept):
    -- deleted once the client keeps no job (all pruned above), or its role
    -- is gone and its jobs count no bytes (a running total of kept jobs is
    -- kept with them: deleted, it would not be given back, and a role
    -- created under the oid would start from 0 beside jobs that count),
    -- skipping any a transaction holds. A transaction of the
    -- client that has jobs not yet committed holds its row (at least
    -- shared), so none is deleted under it; one that comes after makes it
    -- again when it needs it.
    DELETE FROM pgjobs.client_room_locks l
     WHERE l.ctid IN (SELECT c.ctid FROM pgjobs.client_room_locks c
                       WHERE NOT EXISTS (SELECT FROM pgjobs.jobs j
                                          WHERE j.submitted_by_oid = c.submitter_oid)
                          OR (c.kept_bytes = 0
                              AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r
                                               WHERE r.oid = c.submitter_oid))
                       LIMIT v_batch
                         FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_client_room_locks = ROW_COUNT;

    RETURN jsonb_build_object('rescued', v_rescued, 'items_rescued', v_items,
                              'pauses_expired', v_pauses,
                              'deleted', v_deleted, 'more', v_deleted >= v_batch,
                              'objects_queued', v_objects, 'leftovers_queued', v_leftovers,
                              'cron_runs_trimmed', v_trimmed,
                              'scope_locks_deleted', v_scope_locks,
                              'client_room_locks_deleted', v_client_room_locks);
END
$$;

COMMENT ON FUNCTION pgjobs.prune(interval) IS
'Rescues expired leases (retry or fail), deletes jobs finished more than p_retention ago, '
'10,000 a call ("more": true when some are left for the next call; queueing pruned exports'' '
'objects and imports'' rejects objects for deletion by a worker), '
'trims pg_cron''s run history of pgjobs'' entries, and deletes the gate lock rows of scopes '
'no writing job is left of, once pruned (scope_locks_deleted), and the ceiling lock rows of '
'clients that keep no job (client_room_locks_deleted); cancels writing jobs a client '
'paused longer than max_client_pause ago (pauses_expired). Returns a jsonb summary.';
