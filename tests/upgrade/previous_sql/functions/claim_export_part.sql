CREATE OR REPLACE FUNCTION pgjobs.claim_export_part(
    p_id bigint,
    p_worker text,
    p_lease interval DEFAULT '30 seconds')
RETURNS SETOF pgjobs.export_parts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Claims one part of a running parallel export for p_worker: of job p_id,
-- or of any running export when p_id is NULL (an idle worker helping: the
-- export with the fewest parts out first, so helpers take turns between
-- tenants' exports, then the oldest). A
-- part is claimable when it is queued, or running under an expired lease
-- (its worker died: the part resumes from its checkpoint). The claim counts
-- an attempt of the part; a part whose lease expired on its last attempt
-- (the job's max_attempts) fails instead, and the job's worker then fails
-- the job. The returned row's worker is the claim's own identity
-- (name#token): every later call for the part passes it back and is fenced
-- on it. Nothing is claimed from a job with a cancel or pause pending.
-- While the job's deferred typo guard is pending (payload unchecked_fields:
-- its scope had no row at the submit nor at the job's claim), the part's
-- claim judges it first (pgjobs._export_part_judge), as the claim of a
-- whole export does: a part whose chunk met rows while it was pending
-- (55000) is retried alone, and this judgment clears the fields, or fails
-- the part (and through the job's worker the job) naming the unknown one.
-- Nothing is handed out when it does not clear them.
-- Locks: the claimed part (SKIP LOCKED: never waits for another claim);
-- the job's row when the judgment clears its list.
DECLARE
    v_part pgjobs.export_parts;
    v_job pgjobs.jobs;
    v_job_id bigint;
BEGIN
    PERFORM pgjobs._check_claim_args(p_worker, p_lease);
    -- Expired leases on their last attempt fail (they are not handed out).
    UPDATE pgjobs.export_parts p
       SET status = 'failed', lease_expires_at = NULL, updated_at = now(),
           error = coalesce(p.error, 'the worker exporting this part stopped answering')
      FROM pgjobs.jobs j
     WHERE j.id = p.job_id AND (p_id IS NULL OR p.job_id = p_id)
       -- Parts of running exports only (the only ones handed out below):
       -- reached from the jobs' index, never a read of every part a
       -- finished export left behind until it is pruned.
       AND j.status = 'running' AND j.kind = 'export'
       AND p.status = 'running' AND p.lease_expires_at <= now()
       AND p.attempts >= j.max_attempts;

    -- The running exports, the one with the fewest parts out first, then the
    -- oldest: taken by job id alone, every idle worker helped the oldest
    -- export until each of its parts was out, and another tenant's export,
    -- started a moment later, got no helper at all. Driven from the jobs
    -- (jobs_unfinished_idx), each job's parts by its key: the pick read
    -- pgjobs.export_parts in full, every part of every finished export kept
    -- until prune, at every idle worker's every poll.
    FOR v_job_id IN
        SELECT j.id FROM pgjobs.jobs j
         WHERE (p_id IS NULL OR j.id = p_id)
           AND j.status = 'running' AND j.kind = 'export'
           AND j.cancel_requested_at IS NULL AND j.pause_requested_at IS NULL
         ORDER BY (SELECT count(*) FROM pgjobs.export_parts r
                    WHERE r.job_id = j.id AND r.status = 'running'
                      AND r.lease_expires_at > now()), j.id
    LOOP
        SELECT p.* INTO v_part
          FROM pgjobs.export_parts p
         WHERE p.job_id = v_job_id
           AND (p.status = 'queued' OR (p.status = 'running' AND p.lease_expires_at <= now()))
         ORDER BY p.part
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
        EXIT WHEN FOUND;
    END LOOP;
    IF v_part.job_id IS NULL THEN
        RETURN;
    END IF;
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = v_part.job_id;
    IF jsonb_typeof(v_job.payload -> 'unchecked_fields') = 'array'
       AND NOT pgjobs._export_part_judge(v_job, v_part.part) THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE pgjobs.export_parts p
       SET status = 'running', attempts = p.attempts + 1,
           worker = pgjobs._claim_identity(p_worker),
           lease_expires_at = now() + p_lease, updated_at = now()
     WHERE p.job_id = v_part.job_id AND p.part = v_part.part
    RETURNING p.*;
END
$$;

COMMENT ON FUNCTION pgjobs.claim_export_part(bigint, text, interval) IS
'Claims one queued (or lease-expired) part of the running parallel export p_id (any, when NULL) '
'for p_worker (when NULL, of the export with the fewest parts out, then the oldest); the '
'row''s worker is the claim''s identity that later calls are fenced on.';
