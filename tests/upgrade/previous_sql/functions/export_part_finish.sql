CREATE OR REPLACE FUNCTION pgjobs.export_part_finish(
    p_id bigint,
    p_part integer,
    p_worker text,
    p_status text,
    p_result jsonb DEFAULT NULL,
    p_error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Ends p_worker's claim of part p_part of export job p_id, and returns the
-- part's status now, or NULL when the claim was fenced off (lease expired
-- or taken over: nothing changes). p_status says how the claim ended:
--   succeeded  the part's object is written and verified; p_result holds
--              its uri, rows, bytes and sha256 (done = rows);
--   retry      a transient failure: the part is queued again, keeping its
--              checkpoint, unless it used the job's max_attempts (failed);
--   failed     a permanent failure: the part fails (and so, through its
--              worker, does the job);
--   released   handed back (worker shutdown): queued again, the attempt
--              not counted.
-- Only this part is retried: the others keep running. Raises 22023 for
-- another p_status. Locks: the part row, then the job row.
DECLARE
    v_status text;
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('succeeded', 'retry', 'failed', 'released') THEN
        RAISE EXCEPTION 'status must be succeeded, retry, failed or released, not %', p_status
            USING ERRCODE = '22023', HINT = 'Say how the part''s claim ended.';
    END IF;
    UPDATE pgjobs.export_parts p
       SET status = CASE
               WHEN p_status = 'succeeded' THEN 'succeeded'
               WHEN p_status = 'released' THEN 'queued'
               WHEN p_status = 'retry' AND p.attempts < j.max_attempts THEN 'queued'
               ELSE 'failed' END,
           attempts = CASE WHEN p_status = 'released' THEN greatest(p.attempts - 1, 0)
                           ELSE p.attempts END,
           result = CASE WHEN p_status = 'succeeded' THEN p_result ELSE p.result END,
           done = CASE WHEN p_status = 'succeeded'
                       THEN coalesce((p_result ->> 'rows')::bigint, p.done) ELSE p.done END,
           error = CASE WHEN p_status = 'succeeded' THEN NULL ELSE coalesce(p_error, p.error) END,
           lease_expires_at = NULL,
           updated_at = now()
      FROM pgjobs.jobs j
     WHERE p.job_id = p_id AND p.part = p_part
       AND p.worker = p_worker AND p.lease_expires_at > now()
       AND j.id = p.job_id
    RETURNING p.status INTO v_status;
    IF FOUND THEN
        PERFORM pgjobs._export_parts_done(p_id);
    ELSE
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
    END IF;
    RETURN v_status;
END
$$;

COMMENT ON FUNCTION pgjobs.export_part_finish(bigint, integer, text, text, jsonb, text) IS
'Ends a claim of a part of a parallel export (succeeded | retry | failed | released) and returns '
'the part''s status, or NULL when the claim was fenced off. Only that part is retried.';
