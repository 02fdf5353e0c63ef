CREATE OR REPLACE FUNCTION pgjobs.import_rejects_placed(
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
-- For the worker of import p_id: it has just created its rejects object at
-- p_uri, a key that held nothing (another pgjobs database sharing the
-- storage numbers its jobs alike and names the same keys). The job's
-- checkpoint names it from now on (`rejects_uri`, carried through every
-- later batch by pgjobs.import_batch and kept by pgjobs.retry): every
-- later attempt writes its rejects there again, over its own object, and
-- pgjobs.prune deletes it with the job. Fenced on the claim like
-- pgjobs.heartbeat: false (nothing changed) unless p_worker holds the
-- running job. Locks: the job row.
BEGIN
    IF p_uri IS NULL OR p_uri = '' THEN
        RAISE EXCEPTION 'the rejects object''s URI must not be empty' USING ERRCODE = '22023',
            HINT = 'Pass the URI of the object the worker created.';
    END IF;
    UPDATE pgjobs.jobs j
       SET checkpoint = coalesce(j.checkpoint, '{}') || jsonb_build_object('rejects_uri', p_uri)
     WHERE j.id = p_id AND j.kind = 'import' AND j.status = 'running'
       AND j.worker = p_worker AND j.lease_expires_at > now();
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RETURN false;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.import_rejects_placed(bigint, text, text) IS
'For the worker of import job p_id: names in the job''s checkpoint (rejects_uri) the rejects '
'object it created at p_uri, which every later attempt writes again and pruning deletes; '
'fenced on the claim.';
