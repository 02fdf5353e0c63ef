CREATE OR REPLACE FUNCTION pgjobs._doctor_queue(p_target regclass, p_loop_fix text)
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's checks of queued work nothing takes (only p_target's
-- when given): jobs due for over 15 minutes still queued, and queued
-- exports or imports with no `pgjobs worker` connected. p_loop_fix: the
-- `pgjobs run --loop` command doctor suggests. Read-only.
DECLARE
    v_ids    bigint[];
    v_oldest interval;
    v_count  bigint;
BEGIN
    -- Queued work nothing takes --------------------------------------------
    target := CASE WHEN p_target IS NOT NULL THEN p_target::text END;
    check_name := 'jobs.queued_age';
    fix := NULL;
    -- (An infinite run_at, which older releases accepted, has no
    -- age: now() - '-infinity' raises 22008. Such a job is listed; the
    -- oldest age is of the others.)
    SELECT array_agg(j.id ORDER BY j.id), max(now() - j.run_at) FILTER (WHERE isfinite(j.run_at))
      INTO v_ids, v_oldest
      FROM pgjobs.jobs j
     WHERE j.status = 'queued' AND j.run_at < now() - interval '15 minutes'
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no job has been due for more than 15 minutes';
    ELSE
        status := 'warn';
        detail := format('%s queued job(s) due for up to %s (ids %s): nothing runs them, or a '
                         'writing job of their scope holds the gate', cardinality(v_ids),
                         coalesce(date_trunc('second', v_oldest)::text, 'ever'),
                         array_to_string(v_ids[1:20], ', '));
        fix := 'SELECT pgjobs.schedule();  -- or: ' || p_loop_fix || current_database()
               || '; and for exports/imports: pgjobs worker';
    END IF;
    RETURN NEXT;

    -- Exports and imports run in `pgjobs worker` (application_name
    -- 'pgjobs worker', set by poller/worker.py), never in the database.
    check_name := 'workers.listening';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id) INTO v_ids
      FROM pgjobs.jobs j
     WHERE j.status = 'queued' AND j.kind IN ('export', 'import') AND j.run_at <= now()
       AND (p_target IS NULL OR j.target = p_target);
    SELECT count(*) INTO v_count
      FROM pg_catalog.pg_stat_activity a
     WHERE a.datname = current_database() AND a.application_name = 'pgjobs worker'
       -- A name any client may take: only an engine role's session claims.
       AND pgjobs._engine_runner(a.usename::text);
    IF v_ids IS NULL OR v_count > 0 THEN
        status := 'ok';
        detail := format('%s queued export/import job(s); %s `pgjobs worker` connection(s)',
                         coalesce(cardinality(v_ids), 0), v_count);
    ELSE
        status := 'warn';
        detail := format('%s export/import job(s) queued (ids %s) and no `pgjobs worker` is '
                         'connected to this database: nothing runs them', cardinality(v_ids),
                         array_to_string(v_ids[1:20], ', '));
        fix := 'pgjobs worker   # with PGJOBS_DSN pointing at database ' || current_database()
               || ' and the storage credentials';
    END IF;
    RETURN NEXT;
END
$function$;
