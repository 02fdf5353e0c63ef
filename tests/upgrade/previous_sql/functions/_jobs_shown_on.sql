CREATE OR REPLACE FUNCTION pgjobs._jobs_shown_on(p_role name, p_target regclass)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether policy jobs_client_read can show p_role jobs of registered
-- target p_target: p_role may SELECT it (on the table, or on every one of
-- its columns, pgjobs._reads_every_column, asked only where the table
-- grant is missing) or has submitted jobs on it (pgjobs._has_jobs_on).
-- The one place of that rule for the SECURITY DEFINER bodies that answer a
-- client about a target's scopes (pgjobs._allowed_scope_keys_as,
-- pgjobs._canonical_scope_as): for any other table they answer as for one
-- pgjobs never saw. Locks nothing.
BEGIN
    RETURN coalesce(has_table_privilege(p_role, p_target, 'SELECT'), false)
           OR pgjobs._reads_every_column(p_role, p_target)
           OR pgjobs._has_jobs_on(p_role, p_target);
END
$$;
