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
-- For the worker of import p_id: it is about to create its rejects object
-- at p_uri, a name of its own ({job}.{random}.rejects.jsonl) that it found
-- holding nothing (another pgjobs database sharing the storage numbers its
-- jobs alike). Named before it is created, so that a worker killed in
-- between leaves a name pointing at a missing object (which later attempts
-- write and pruning takes for deleted), never an object nobody names. The
-- job's checkpoint names it from now on (`rejects_uri`, carried through
-- every later batch by pgjobs.import_batch and kept by pgjobs.retry):
-- every later attempt creates it (conditionally) or, once
-- pgjobs.import_rejects_created recorded that this job created it
-- (`rejects_created`), writes its rejects there, and pgjobs.prune deletes
-- it with the job. A new name drops that record: the new object is not
-- created yet. The name it replaces is queued in pgjobs.storage_deletions
-- at once only when the job provably created it (the job's object under
-- another worker's storage): a worker deletes it even if this one dies
-- before it does; one never created by the job may be another's, and is
-- left alone. A name found taken after all is un-named by
-- pgjobs.import_rejects_taken, never replaced here. Fenced on the claim like pgjobs.heartbeat: false (nothing
-- changed) unless p_worker holds the running job. Locks: the job row.
DECLARE
    v_earlier text;
    v_created text;
BEGIN
    IF p_uri IS NULL OR p_uri = '' THEN
        RAISE EXCEPTION 'the rejects object''s URI must not be empty' USING ERRCODE = '22023',
            HINT = 'Pass the URI of the object the worker is about to create.';
    END IF;
    SELECT CASE WHEN jsonb_typeof(j.checkpoint -> 'rejects_uri') = 'string'
                THEN nullif(j.checkpoint ->> 'rejects_uri', '') END,
           CASE WHEN jsonb_typeof(j.checkpoint -> 'rejects_created') = 'string'
                THEN j.checkpoint ->> 'rejects_created' END
      INTO v_earlier, v_created
      FROM pgjobs.jobs j
     WHERE j.id = p_id AND j.kind = 'import' AND j.status = 'running'
       AND j.worker = p_worker AND j.lease_expires_at > now()
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RETURN false;
    END IF;
    UPDATE pgjobs.jobs j
       SET checkpoint = CASE WHEN v_earlier = p_uri THEN j.checkpoint
                             ELSE (coalesce(j.checkpoint, '{}') - 'rejects_created'
                                   - 'rejects_sha256')
                                  || jsonb_build_object('rejects_uri', p_uri) END
     WHERE j.id = p_id;
    IF v_earlier IS NOT NULL AND v_earlier <> p_uri AND v_created = v_earlier THEN
        INSERT INTO pgjobs.storage_deletions (uri, job_id) VALUES (v_earlier, p_id);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.import_rejects_placed(bigint, text, text) IS
'For the worker of import job p_id, before it creates its rejects object at p_uri: names it in '
'the job''s checkpoint (rejects_uri; not yet created: pgjobs.import_rejects_created), and '
'queues the object it replaces for deletion if the job created that one; fenced on the claim.';
