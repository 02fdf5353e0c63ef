CREATE OR REPLACE FUNCTION pgjobs._engine_role()
RETURNS name
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The role pgjobs' engine acts on targets as: the owner of its SECURITY
-- DEFINER client functions (the submits, the read path), whose members
-- run the pages, export reads and import inserts (docs/operations.md,
-- "Which role should own and run pgjobs"). Found as doctor's
-- target.trusted finds it. Locks nothing. (PL/pgSQL: a SQL body would
-- be checked at creation, before the function it names exists.)
BEGIN
    RETURN (SELECT p.proowner::regrole::name FROM pg_catalog.pg_proc p
             WHERE p.oid = 'pgjobs._visible_as(name, regclass, text, jsonb, text, integer)'
                           ::regprocedure);
END
$$;
