CREATE OR REPLACE FUNCTION pgjobs._queue_export_leftovers(
    p_id bigint,
    p_checkpoint jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Queues the upload leftovers of export p_id (pgjobs._export_leftovers of
-- p_checkpoint, its checkpoint, and of its parts) in pgjobs.storage_deletions
-- for a worker to remove (pgjobs.claim_storage_deletions, p_uploads), once
-- each. Called where an export ends without a worker of its own to remove
-- them: canceled while queued or paused (pgjobs._cancel_as), canceled by a
-- lease rescue or at a claim (pgjobs._rescue_sweep,
-- pgjobs._export_fields_at_claim), failed for good at a claim
-- (pgjobs._may_start_attempt); and canceled by its own worker
-- (pgjobs.heartbeat, pgjobs.fail, pgjobs.release), which removes them
-- itself unless it (or a part's worker) dies before its cleanup: removing
-- what is gone already is done. pgjobs.prune queues those of every export
-- it prunes. Without it they waited for the stale-upload sweep (an hour
-- later, only while the destination stays allowed and a worker ran that
-- hour). A worker that still holds an old lease is fenced off already; a
-- job taken back meanwhile (pgjobs.retry) keeps them: the claim drops its
-- rows. A canceled one's objects are queued too
-- (pgjobs._queue_export_objects: each deleted only while it reads back as
-- what the job wrote there); one failed for good keeps them until pruned,
-- as when its worker failed it. Returns how many were queued. Locks:
-- nothing beyond the rows it inserts.
DECLARE
    v_queued integer;
BEGIN
    INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
    SELECT l.uri, p_id, l.upload
      FROM pgjobs._export_leftovers(p_id, p_checkpoint) l
     WHERE NOT EXISTS (SELECT FROM pgjobs.storage_deletions d
                        WHERE d.job_id = p_id AND d.uri = l.uri AND d.upload = l.upload);
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    IF EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = p_id AND j.status = 'canceled') THEN
        v_queued := v_queued + pgjobs._queue_export_objects(p_id, p_checkpoint);
    END IF;
    RETURN v_queued;
END
$$;

COMMENT ON FUNCTION pgjobs._queue_export_leftovers(bigint, jsonb) IS
'Queues the upload leftovers an export''s checkpoint and its parts name (multipart uploads, '
'temporary files, staged parts) for removal by a worker, where the export ended without its own; '
'a canceled one''s objects too (pgjobs._queue_export_objects).';
