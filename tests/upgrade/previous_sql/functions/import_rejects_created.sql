CREATE OR REPLACE FUNCTION pgjobs.import_rejects_created(
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
-- For the worker of import p_id: its conditional create of the rejects
-- object at p_uri (the name pgjobs.import_rejects_placed put in the
-- checkpoint) succeeded, so the object is provably the job's. The
-- checkpoint records it (`rejects_created`: the URI created), and only
-- then may a later attempt write it again with a plain PUT, pgjobs.prune
-- delete it with the job, or a new name replace it with the old one
-- queued for deletion. A name without it (a worker killed after naming,
-- before or after a create that found another's object there, or a
-- checkpoint of a release before this flag) is never written over nor
-- deleted: the next attempt creates it conditionally again, and un-names
-- it when that finds an object there. A checkpoint naming another URI is
-- left alone. Fenced on the claim like pgjobs.heartbeat: false (nothing
-- changed) unless p_worker holds the running job. Locks: the job row.
BEGIN
    IF p_uri IS NULL OR p_uri = '' THEN
        RAISE EXCEPTION 'the rejects object''s URI must not be empty' USING ERRCODE = '22023',
            HINT = 'Pass the URI of the object the worker created.';
    END IF;
    UPDATE pgjobs.jobs j
       SET checkpoint = CASE WHEN j.checkpoint ->> 'rejects_uri' = p_uri
                             THEN (j.checkpoint - 'rejects_sha256')
                                  || jsonb_build_object('rejects_created', p_uri)
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

COMMENT ON FUNCTION pgjobs.import_rejects_created(bigint, text, text) IS
'For the worker of import job p_id: its conditional create of the rejects object p_uri (the '
'name its checkpoint holds) succeeded; the checkpoint records it as the job''s '
'(rejects_created), the only rejects object a later attempt writes over and pruning deletes; '
'fenced on the claim.';
