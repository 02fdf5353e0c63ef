CREATE OR REPLACE FUNCTION pgjobs._doctor_cron_history(p_retention interval, p_prune_sql text)
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's pg_cron.history check (no row where pg_cron's history is
-- not readable here). p_retention and p_prune_sql: the retention and the
-- prune command this database runs. Read-only.
DECLARE
    v_count bigint;
    v_old   bigint;
    -- pg_cron's own relations, read as found (by oid), never by name.
    v_runs  regclass := pgjobs._cron_relation('job_run_details');
    v_jobs  regclass := pgjobs._cron_relation('job');
BEGIN
    -- pg_cron's run history of pgjobs' jobs (prune trims it) -----------------
    target := NULL;
    IF v_runs IS NOT NULL AND v_jobs IS NOT NULL
       AND has_table_privilege(v_runs, 'SELECT') AND has_table_privilege(v_jobs, 'SELECT') THEN
        check_name := 'pg_cron.history';
        fix := NULL;
        -- pgjobs' own jobs' runs (pgjobs._cron_jobs), not a client's look-alikes'.
        EXECUTE format($q$
            SELECT count(*), count(*) FILTER (WHERE d.end_time < now() - $1)
              FROM %s d
             WHERE d.jobid IN (SELECT c.jobid FROM pgjobs._cron_jobs() c
                                WHERE c.jobname IN ('pgjobs.run', 'pgjobs.prune'))
        $q$, v_runs) INTO v_count, v_old USING p_retention;
        IF v_count > 10000 AND v_old > 0 THEN
            status := 'warn';
            detail := format('cron.job_run_details holds %s rows of pgjobs'' cron jobs, %s '
                             'older than the retention (%s): they are not being trimmed',
                             v_count, v_old, p_retention);
            fix := p_prune_sql;
        ELSE
            status := 'ok';
            detail := format('cron.job_run_details holds %s rows of pgjobs'' cron jobs (%s '
                             'older than the retention, %s)', v_count, v_old, p_retention);
        END IF;
        RETURN NEXT;
    END IF;
END
$function$;
