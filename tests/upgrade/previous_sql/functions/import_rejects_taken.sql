CREATE OR REPLACE FUNCTION pgjobs.import_rejects_taken(
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
-- For the worker of import p_id: the name it gave its rejects object
-- (pgjobs.import_rejects_placed) held nothing when it looked, but its
-- conditional create found an object there (another's, created in
-- between). The checkpoint stops naming p_uri, and the object is not queued
-- for deletion: it is not the job's. A checkpoint that names another URI
-- is left alone. Fenced on the claim like pgjobs.heartbeat: false (nothing
-- changed) unless p_worker holds the running job. Locks: the job row.
BEGIN
    IF p_uri IS NULL OR p_uri = '' THEN
        RAISE EXCEPTION 'the rejects object''s URI must not be empty' USING ERRCODE = '22023',
            HINT = 'Pass the URI the worker found taken.';
    END IF;
    UPDATE pgjobs.jobs j
       SET checkpoint = CASE WHEN j.checkpoint ->> 'rejects_uri' = p_uri
                             THEN j.checkpoint - 'rejects_uri' - 'rejects_created'
                                  - 'rejects_sha256'
                             ELSE j.checkpoint END
     WHERE j.id = p_id AND j.kind = 'import' AND j.status = 'running'
       AND j.worker = p_worker AND j.lease_expires_at > now();
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RETURN false;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.import_rejects_taken(bigint, text, text) IS
'For the worker of import job p_id: its rejects object''s name p_uri turned out to hold another''s '
'object; the checkpoint stops naming it (nothing is queued for deletion); fenced on the claim.';
