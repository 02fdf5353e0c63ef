CREATE OR REPLACE FUNCTION pgjobs.import_rejects_creating(
    p_id bigint,
    p_worker text,
    p_uri text,
    p_sha256 text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- For the worker of import p_id: it is about to create its rejects object
-- at p_uri (the name its checkpoint holds: pgjobs.import_rejects_placed)
-- conditionally, with bytes whose SHA-256 is p_sha256 (hex). The
-- checkpoint records the digest (`rejects_sha256`), so that an attempt
-- after a worker killed between that create and
-- pgjobs.import_rejects_created can tell the object this job created
-- (holding exactly those bytes) from another pgjobs database's found
-- there: the first it takes for the job's, the second it un-names
-- (pgjobs.import_rejects_taken) and never writes over. A checkpoint naming
-- another URI is left alone. Fenced on the claim like pgjobs.heartbeat:
-- false (nothing changed) unless p_worker holds the running job. Locks:
-- the job row.
BEGIN
    IF p_uri IS NULL OR p_uri = '' THEN
        RAISE EXCEPTION 'the rejects object''s URI must not be empty' USING ERRCODE = '22023',
            HINT = 'Pass the URI of the object the worker is about to create.';
    END IF;
    IF p_sha256 IS NULL OR p_sha256 !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'the rejects object''s digest must be 64 lowercase hex digits'
            USING ERRCODE = '22023',
            HINT = 'Pass hashlib.sha256(data).hexdigest() of the bytes about to be created.';
    END IF;
    UPDATE pgjobs.jobs j
       SET checkpoint = CASE WHEN j.checkpoint ->> 'rejects_uri' = p_uri
                             THEN j.checkpoint || jsonb_build_object('rejects_sha256', p_sha256)
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

COMMENT ON FUNCTION pgjobs.import_rejects_creating(bigint, text, text, text) IS
'For the worker of import job p_id, just before it conditionally creates its rejects object '
'p_uri: records the SHA-256 of the bytes it creates (rejects_sha256), by which a later attempt '
'recognises that object as the job''s after a kill; fenced on the claim.';
