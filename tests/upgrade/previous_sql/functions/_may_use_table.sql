CREATE OR REPLACE FUNCTION pgjobs._may_use_table(p_role name, p_target regclass)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether p_role may learn what pgjobs knows of table p_target (that it is
-- registered, its columns, its problems): a member of pgjobs_admin (who
-- may read pgjobs.target_registry), or a role with some privilege on the
-- table (on any of its columns, or DELETE or TRUNCATE). Any other role is
-- told the same about a registered table as about any other table
-- (pgjobs._target). A table dropped meanwhile (NULL): no. Locks nothing.
BEGIN
    RETURN pg_catalog.pg_has_role(p_role, 'pgjobs_admin', 'MEMBER')
        OR coalesce(has_any_column_privilege(p_role, p_target,
                                             'SELECT, INSERT, UPDATE, REFERENCES'), false)
        OR coalesce(has_table_privilege(p_role, p_target, 'DELETE, TRUNCATE'), false);
END
$$;
