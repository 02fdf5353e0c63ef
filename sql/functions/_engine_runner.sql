CREATE OR REPLACE FUNCTION pgjobs._engine_runner(p_role text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a session or a pg_cron job (or run) of role p_role (a name, as
-- pg_stat_activity.usename and cron.job.username hold it) may be pgjobs'
-- engine: that role exists and may call pgjobs.run (EXECUTE on it: a
-- member of pgjobs_admin, pgjobs' owner or a role with its rights, a
-- superuser; never pgjobs_client, from which zz_grants revokes it). A
-- pgjobs_admin membership alone missed the owner: `pgjobs run --loop` as
-- the role that migrated (a managed service's master user), and the
-- runner of "Which role should own and run pgjobs", which connects with
-- role=pgjobs_owner so that pgjobs.schedule() makes the cron jobs as
-- pgjobs_owner: doctor said pgjobs unscheduled and prune kept their
-- history. A name alone is any role's to take: application_name ('pgjobs
-- run', 'pgjobs worker') is set by the client, and pg_cron lets every role
-- that may use its schema own jobs named pgjobs.run or pgjobs.prune
-- (unique per role only), which run as that role. The one rule behind
-- every reader that looks for the engine: pgjobs._cron_jobs, prune's trim
-- of pg_cron's history, doctor's runner and worker counts, the engine's
-- wait note. False for a role that is gone. Locks nothing.
BEGIN
    RETURN EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.rolname = p_role
                      AND has_function_privilege(r.oid, 'pgjobs.run(pg_catalog.interval)',
                                                 'EXECUTE'));
END
$$;
