CREATE OR REPLACE FUNCTION pgjobs.import_rejects_written(
    p_id bigint,
    p_worker text,
    p_uri text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- For the worker of import p_id, as the job is about to fail (too many
-- rejects, or any other error after records were rejected): it has written
-- the kept rejects (pgjobs.import_rejects) to p_uri, and the job's result
-- names it, as a successful import's does: the counts of the committed
-- batches (the checkpoint's) with `rejected` the number of rejects kept and
-- `rejects_uri`. The worker then calls pgjobs.fail, which leaves the result
-- alone. Fenced on the claim like pgjobs.heartbeat: false (nothing changed)
-- unless p_worker holds the running job. Locks: the job row.
DECLARE
    v_ck jsonb;
BEGIN
    SELECT coalesce(j.checkpoint, '{}') INTO v_ck FROM pgjobs.jobs j
     WHERE j.id = p_id AND j.kind = 'import' AND j.status = 'running'
       AND j.worker = p_worker AND j.lease_expires_at > now()
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RETURN false;
    END IF;
    UPDATE pgjobs.jobs j
       SET result = coalesce(j.result, '{}') || jsonb_build_object(
               'rows', coalesce((v_ck ->> 'inserted')::bigint, 0)
                       + coalesce((v_ck ->> 'updated')::bigint, 0),
               'inserted', coalesce((v_ck ->> 'inserted')::bigint, 0),
               'updated', coalesce((v_ck ->> 'updated')::bigint, 0),
               'skipped', coalesce((v_ck ->> 'skipped')::bigint, 0),
               'records', coalesce((v_ck ->> 'records')::bigint, 0),
               'rejected', (SELECT count(*) FROM pgjobs.import_rejects r
                             WHERE r.job_id = p_id),
               'rejects_uri', p_uri)
     WHERE j.id = p_id;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.import_rejects_written(bigint, text, text) IS
'For the worker of import job p_id, as it fails: names the rejects object it wrote (p_uri) in '
'the job''s result, with the counts of the committed batches; fenced on the claim.';
