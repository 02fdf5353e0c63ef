CREATE OR REPLACE FUNCTION pgjobs._queue_export_objects(
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
-- Queues the objects canceled export p_id made or may have made
-- (pgjobs._export_made of p_checkpoint, its checkpoint, and of its parts)
-- in pgjobs.storage_deletions, once each, for a worker's housekeeping to
-- delete while each reads back as what the job wrote there (anything else
-- at the key is another's and stays). Called by
-- pgjobs._queue_export_leftovers wherever an export becomes canceled:
-- without a worker of its own, and by its own worker (pgjobs.heartbeat,
-- pgjobs.fail, pgjobs.release: that worker removes them too, but a part
-- worker killed after its write, past the coordinator's cleanup, or the
-- worker itself killed right after, left them behind). Before, they waited
-- for pgjobs.prune
-- (24 hours by default). A part's checkpoint no longer changes once the
-- cancel is requested (pgjobs.export_part_heartbeat), and a row is claimed
-- only once no part of the job holds a lease
-- (pgjobs.claim_storage_deletions). A job taken back by pgjobs.retry keeps
-- them: the retry drops its rows (their upload is set), and
-- pgjobs.start_storage_deletion refuses a row whose job runs again.
-- Returns how many were queued. Locks: nothing beyond the rows it inserts.
DECLARE
    v_queued integer;
BEGIN
    INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
    SELECT m.uri, p_id, m.upload
      FROM pgjobs._export_made(p_id, p_checkpoint) m
     WHERE NOT EXISTS (SELECT FROM pgjobs.storage_deletions d
                        WHERE d.job_id = p_id AND d.uri = m.uri AND d.upload = m.upload);
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    RETURN v_queued;
END
$$;

COMMENT ON FUNCTION pgjobs._queue_export_objects(bigint, jsonb) IS
'Queues the objects a canceled export and its parts made or may have made for a worker to '
'delete, each only while it reads back as what the job wrote there.';
