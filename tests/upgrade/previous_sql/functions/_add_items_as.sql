CREATE OR REPLACE FUNCTION pgjobs._add_items_as(
    p_caller name,
    p_id bigint,
    p_items jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SECURITY DEFINER
AS $$
-- The body of pgjobs.add_items, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.add_items, its only permitted caller:
-- pgjobs._enter, 42501 otherwise). Who may: pgjobs._controlled_job, the
-- rule of pgjobs.cancel, and what a submit of the job would need now, and
-- only its submitter or an administrator (the items count toward the
-- submitter's room: pgjobs._keep_client_bytes, 42501 for another role). The
-- job row is locked first, so the items land either before its last item
-- finishes (the job then waits for them) or not at all (55000: it has
-- finished). Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('add_items', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_job := pgjobs._controlled_job(p_id);  -- P0002, 42501; locks the row
    IF NOT v_job.fanout THEN
        RAISE EXCEPTION 'job % is not a fan-out job', p_id USING ERRCODE = '22023',
            HINT = 'Items belong to jobs submitted with pgjobs.submit_items().';
    END IF;
    -- Items are new work, not control of the job: the checks of
    -- pgjobs.submit_items, now and whoever submitted it (a submitter whose
    -- UPDATE was revoked may still cancel its job, not grow it; a target
    -- made untrusted since takes no more work). allowed_scopes:
    -- pgjobs._controlled_job.
    IF EXISTS (SELECT 1 FROM pgjobs.target_registry r WHERE r.target = v_job.target) THEN
        PERFORM pgjobs._target(v_job.target);  -- 42501: no longer trusted
    END IF;
    PERFORM pgjobs._require(v_job.target, pgjobs._kind_privilege(v_job.kind));  -- 42501
    IF v_job.status NOT IN ('queued', 'running', 'paused') THEN
        RAISE EXCEPTION 'job % (%) takes no more items', p_id, v_job.status
            USING ERRCODE = '55000',
            HINT = 'Submit the items as a new job with pgjobs.submit_items().';
    END IF;
    PERFORM pgjobs._items_array(p_items, false);  -- 22023: not an array
    RETURN pgjobs._leave(pgjobs._items_add(p_id, p_items, false));
END
$$;
