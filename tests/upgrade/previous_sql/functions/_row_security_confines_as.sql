CREATE OR REPLACE FUNCTION pgjobs._row_security_confines_as(p_caller name, p_target regclass,
                                                            p_role name)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs._row_security_confines, run as pgjobs' owner for
-- p_caller (its only permitted caller: pgjobs._enter, 42501 otherwise).
-- Answers only about p_caller or a role whose privileges it has
-- (pgjobs._require_self), and reads the registration (ignore_row_security)
-- only of a table that role may SELECT (on the table or on every one of
-- its columns, pgjobs._reads_every_column: the view pgjobs.targets lists
-- such a table). Locks nothing.
BEGIN
    p_caller := pgjobs._enter('_row_security_confines', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    PERFORM pgjobs._require_self(p_caller, p_role);
    RETURN pgjobs._leave(pgjobs._row_security_rule(
        p_target, p_role, coalesce(has_table_privilege(p_role, p_target, 'SELECT'), false)
                          OR pgjobs._reads_every_column(p_role, p_target)));
END
$$;
