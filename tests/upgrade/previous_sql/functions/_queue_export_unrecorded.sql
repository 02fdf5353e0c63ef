CREATE OR REPLACE FUNCTION pgjobs._queue_export_unrecorded(
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
-- Queues in pgjobs.storage_deletions the S3 multipart uploads export p_id
-- opened and never recorded: each checkpointed upload (the job's, a
-- part's, a join's; pgjobs._export_leftovers) that records `opening` (its
-- create was about to be sent) becomes a row {"unrecorded": state}, whose
-- removal aborts every open upload of that object's key but the one the
-- state names (storage.remove_leftover). Called where an export fails for
-- good without a worker (pgjobs._rescue_sweep, out of attempts): the
-- upload it recorded is kept for pgjobs.retry, which resumes it, but an
-- upload no record names serves no retry and costs storage until it is
-- aborted. A retry before the removal drops the rows (the claim), and its
-- attempt aborts those uploads itself as it resumes. Returns how many were
-- queued. Locks: nothing beyond the rows it inserts.
DECLARE
    v_queued integer;
BEGIN
    INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
    SELECT u.uri, p_id, jsonb_build_object('unrecorded', u.state)
      FROM (SELECT l.uri,
                   CASE WHEN jsonb_typeof(l.upload -> 'join') = 'object'
                        THEN l.upload -> 'join' ELSE l.upload END AS state
              FROM pgjobs._export_leftovers(p_id, p_checkpoint) l) u
     WHERE jsonb_typeof(u.state) = 'object' AND u.state ? 'opening'
       AND NOT EXISTS (SELECT FROM pgjobs.storage_deletions d
                        WHERE d.job_id = p_id AND d.uri = u.uri
                          AND d.upload = jsonb_build_object('unrecorded', u.state));
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    RETURN v_queued;
END
$$;

COMMENT ON FUNCTION pgjobs._queue_export_unrecorded(bigint, jsonb) IS
'Queues for removal the S3 multipart uploads an export opened and never recorded (its checkpoints '
'record `opening`), where it fails for good without a worker; what it recorded is kept for '
'pgjobs.retry.';
