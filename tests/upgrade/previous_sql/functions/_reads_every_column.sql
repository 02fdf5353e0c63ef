CREATE OR REPLACE FUNCTION pgjobs._reads_every_column(p_role name, p_target regclass)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether p_role may SELECT table p_target as a whole: SELECT on the table,
-- or SELECT granted on every one of its columns now (GRANT SELECT (a, b,
-- c) ON t), which lets plain PostgreSQL read every row and column of it as
-- a table grant does. Every column of the table, not the registered ones
-- only: what the engine then reads or deletes for the role tells it
-- nothing it could not read itself, and a column added later without a
-- grant makes the answer false at the next call. Asked at every call
-- (pgjobs._grant_problem, pgjobs._require_entry; policy jobs_client_read
-- and view pgjobs.targets through pgjobs._column_read_targets), never
-- remembered. A table with no column, or dropped meanwhile: false.
-- Row-level security is not its question (pgjobs._row_security_rule).
-- PL/pgSQL rather than SQL so that its plan is cached for the session: a
-- SQL function with SET clauses is planned again on every call (~0.1 ms
-- of every read the shared check makes). Locks nothing.
BEGIN
    IF coalesce(has_table_privilege(p_role, p_target, 'SELECT'), false) THEN
        RETURN true;  -- the table grant: no column to look at
    END IF;
    RETURN coalesce(has_any_column_privilege(p_role, p_target, 'SELECT'), false)
       AND NOT EXISTS (
               SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
                  AND NOT coalesce(has_column_privilege(p_role, p_target, a.attnum,
                                                        'SELECT'), false));
END
$$;

COMMENT ON FUNCTION pgjobs._reads_every_column(name, regclass) IS
'Whether a role holds SELECT on a table, or on every one of its columns (column grants), now: '
'what the engine''s checks of SELECT ask.';
