CREATE OR REPLACE FUNCTION pgjobs.export_part_heartbeat(
    p_id bigint,
    p_part integer,
    p_worker text,
    p_done bigint DEFAULT NULL,
    p_checkpoint jsonb DEFAULT NULL,
    p_lease interval DEFAULT '30 seconds')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Extends p_worker's lease on part p_part of export job p_id and records
-- its progress (done: rows written) and checkpoint, both optional; the
-- job's done becomes the sum of its parts'. Fenced: only the claim holding
-- the part's unexpired lease changes anything. Returns false when the part's
-- worker must stop now: it lost the part, or the job is no longer running or
-- has a cancel or pause pending (the job's own worker acts on those).
-- Errors: 22023 for a negative p_done or a p_checkpoint that is not a JSON
-- object (pgjobs._check_progress, as pgjobs.heartbeat: a part's negative
-- done lowered the job's, the sum) and for an empty worker name or a lease
-- outside 1 second to 1 day (pgjobs._check_claim_args, as the part's claim:
-- a NULL lease dropped the part's lease silently).
-- Locks: the part row, then the job row (for its done).
DECLARE
    v_found boolean;
BEGIN
    PERFORM pgjobs._check_progress(p_done, p_checkpoint);  -- 22023
    PERFORM pgjobs._check_claim_args(p_worker, p_lease);  -- 22023, as the claim's
    UPDATE pgjobs.export_parts p
       SET lease_expires_at = now() + p_lease,
           done = coalesce(p_done, p.done),
           checkpoint = coalesce(p_checkpoint, p.checkpoint),
           updated_at = now()
      FROM pgjobs.jobs j
     WHERE p.job_id = p_id AND p.part = p_part
       AND p.worker = p_worker AND p.lease_expires_at > now()
       AND j.id = p.job_id AND j.status = 'running'
       AND j.cancel_requested_at IS NULL AND j.pause_requested_at IS NULL;
    v_found := FOUND;
    IF NOT v_found THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
    END IF;
    IF v_found AND p_done IS NOT NULL THEN
        PERFORM pgjobs._export_parts_done(p_id);
    END IF;
    RETURN v_found;
END
$$;

COMMENT ON FUNCTION pgjobs.export_part_heartbeat(bigint, integer, text, bigint, jsonb, interval) IS
'Extends the lease of a part of a parallel export owned by p_worker and records its done and '
'checkpoint (the job''s done is the sum of its parts''). False: stop now (part lost, job not '
'running, cancel or pause pending). A negative p_done, a p_checkpoint that is not a JSON object, '
'an empty worker or a lease outside 1 second to 1 day raises 22023.';
