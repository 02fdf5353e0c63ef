CREATE OR REPLACE FUNCTION pgjobs._cron_relation(p_name text)
RETURNS regclass
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pg_cron's relation cron.<p_name> (job, job_run_details) in this database,
-- or NULL when there is none: only a relation that is a member of
-- extension pg_cron counts. Where pg_cron is not created, any role with
-- CREATE on the database can make a schema cron and, in it, a view or a
-- table (with triggers, policies or functions in its columns) named job;
-- code reading or deleting there by name (to_regclass('cron.job')) would
-- run that role's functions with the rights of whoever called pgjobs:
-- pgjobs' owner in the SECURITY DEFINER pgjobs._engine_wait (granted to
-- clients), the engine in prune, an administrator in unschedule and
-- doctor. Every pgjobs routine that touches pg_cron's tables or
-- functions asks here first (pgjobs.schedule creates the extension, whose
-- schema cron then is its own), and reads the relation returned, spliced
-- with format('%s', regclass), never cron.<name> by name: one idiom, and
-- what is read is what was checked. Locks nothing.
BEGIN
    RETURN (SELECT c.oid::regclass
              FROM pg_catalog.pg_extension e
              JOIN pg_catalog.pg_depend d
                ON d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = e.oid
               AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
              JOIN pg_catalog.pg_class c ON c.oid = d.objid
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE e.extname = 'pg_cron' AND n.nspname = 'cron' AND c.relname = p_name
               AND c.relkind IN ('r', 'p')
             LIMIT 1);
END
$$;
