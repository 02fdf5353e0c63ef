CREATE OR REPLACE FUNCTION pgjobs.claim_storage_deletions(
    p_limit integer DEFAULT 10,
    p_hold interval DEFAULT '5 minutes',
    p_uploads boolean DEFAULT false)
RETURNS SETOF pgjobs.storage_deletions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Hands up to p_limit queued storage deletions (objects of pruned jobs;
-- with p_uploads, upload leftovers of exports too: rows whose `upload` is
-- set, pgjobs._queue_export_leftovers) to the calling worker, oldest
-- first. Each is hidden from other workers for p_hold (its retry_at moves
-- forward) and its attempts counted; the worker deletes the object (or
-- removes what `upload` names, never the object) and settles it with
-- pgjobs.finish_storage_deletion. A worker that dies leaves the row to be
-- claimed again after p_hold. Rows that failed 10 times are left for an
-- operator (last_error says why). Without p_uploads (a worker of a release
-- before them, which would delete the object at `uri`) no leftover is
-- handed out.
-- Fencing of leftovers: a job queued, running or paused again (taken
-- back by pgjobs.retry) resumes its upload and its own worker removes it
-- at its end, so its leftover rows are dropped here, never handed out; a
-- leftover of a parallel export waits while one of its parts still holds
-- a live lease (the part stops at its next heartbeat).
-- Locks: FOR UPDATE SKIP LOCKED on the rows it takes; the dropped rows.
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 1000, not %', p_limit
            USING ERRCODE = '22023', HINT = 'Claim from 1 to 1000 at a time.';
    END IF;
    IF p_hold IS NULL OR p_hold < interval '1 second' THEN
        RAISE EXCEPTION 'hold must be at least 1 second, not %', p_hold
            USING ERRCODE = '22023', HINT = 'The default is 5 minutes.';
    END IF;
    IF p_uploads IS NULL THEN
        RAISE EXCEPTION 'uploads must be true or false, not NULL'
            USING ERRCODE = '22023',
                  HINT = 'true: the caller removes upload leftovers too (the default is false).';
    END IF;
    IF p_uploads THEN
        DELETE FROM pgjobs.storage_deletions d
         USING pgjobs.jobs j
         WHERE d.upload IS NOT NULL AND j.id = d.job_id
           AND j.status IN ('queued', 'running', 'paused');
    END IF;
    RETURN QUERY
        WITH picked AS (
            SELECT d.id FROM pgjobs.storage_deletions d
             WHERE d.retry_at <= now() AND d.attempts < 10
               AND (d.upload IS NULL
                    OR (p_uploads
                        AND NOT EXISTS (SELECT FROM pgjobs.export_parts p
                                         WHERE p.job_id = d.job_id AND p.status = 'running'
                                           AND p.lease_expires_at > now())))
             ORDER BY d.id
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED)
        UPDATE pgjobs.storage_deletions d
           SET attempts = d.attempts + 1,
               retry_at = now() + p_hold
          FROM picked
         WHERE d.id = picked.id
        RETURNING d.*;
END
$$;

COMMENT ON FUNCTION pgjobs.claim_storage_deletions(integer, interval, boolean) IS
'Claims up to p_limit queued storage deletions (objects of pruned jobs; with p_uploads, upload '
'leftovers of exports that ended without their worker too) for a worker, hiding them from other '
'workers for p_hold (FOR UPDATE SKIP LOCKED). Settle each with pgjobs.finish_storage_deletion.';
