CREATE OR REPLACE FUNCTION pgjobs.unregister_target(p_target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Remove the registration of p_target. The table and its data are untouched.
-- Locks: the per-target advisory xact lock shared with register_target, then
-- the registry row FOR UPDATE (submits hold it FOR KEY SHARE). Refuses (55006) while jobs of the target are queued or
-- running; raises P0002 when the table is not registered.
DECLARE
    v_jobs bigint[];
BEGIN
    IF p_target IS NULL THEN
        RAISE EXCEPTION 'target must not be NULL' USING ERRCODE = '22023',
                  HINT = 'Pass a table, e.g. ''public.user_table_rows''.';
    END IF;

    -- register_target's locks, in its order.
    PERFORM pgjobs._advisory_xact_lock(
        pg_catalog.hashtext('pgjobs.register:' || p_target::oid::text),
        format('registrations of %s', p_target));

    -- FOR UPDATE waits for the submits in flight (pgjobs._insert_job_row
    -- holds the row FOR KEY SHARE to its commit), whose jobs the check
    -- below then sees, and holds new ones back.
    PERFORM 1 FROM pgjobs.target_registry r WHERE r.target = p_target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'target % is not registered', p_target
            USING ERRCODE = 'P0002',
                  HINT = 'SELECT target FROM pgjobs.targets lists the registered tables.';
    END IF;

    -- A registration made later may name other columns: the failed and
    -- canceled jobs of this one are never retried under it. Marked first:
    -- the UPDATE waits for a retry in flight on one of them, and the check
    -- below then sees that job queued.
    PERFORM pgjobs._mark_registration_changed(p_target);
    SELECT array_agg(j.id ORDER BY j.id) INTO v_jobs
      FROM pgjobs.jobs j
     WHERE j.target = p_target AND j.status IN ('queued', 'running', 'paused');
    IF v_jobs IS NOT NULL THEN
        RAISE EXCEPTION 'target % has % queued, running or paused job(s)', p_target,
                        pg_catalog.cardinality(v_jobs)
            USING ERRCODE = '55006',
                  HINT = format('Cancel them first (SELECT pgjobs.cancel(id) FROM pgjobs.jobs '
                                'WHERE id = ANY (%L)) and wait for running ones to stop. '
                                'A job canceled or failed is not retried once the target is '
                                'unregistered: submit it again after registering it again.',
                                v_jobs::text);
    END IF;

    DELETE FROM pgjobs.target_registry r WHERE r.target = p_target;
END
$function$;

COMMENT ON FUNCTION pgjobs.unregister_target(regclass) IS
'Remove a table''s pgjobs registration (the table itself is untouched). Raises P0002 if it is not '
'registered and 55006 while any of its jobs is queued, running or paused. Its failed and canceled '
'jobs can no longer be retried.';
