CREATE OR REPLACE FUNCTION pgjobs._confined_targets_as(p_caller name, p_role name)
RETURNS regclass[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs._confined_targets, run as pgjobs' owner for p_caller
-- (its only permitted caller: pgjobs._enter, 42501 otherwise): the tables
-- with row security enabled (only those can confine anyone) on which
-- pgjobs._row_security_rule confines p_role, the registration read only
-- for those p_role may SELECT (on the table or on every one of its
-- columns, pgjobs._reads_every_column, as the policy that calls it asks
-- it). Answers only about p_caller or a role whose
-- privileges it has (pgjobs._require_self). Costs one pass over pg_class's
-- rows (no index on relrowsecurity), a fraction of a millisecond in a
-- database of a few thousand relations. Locks nothing.
BEGIN
    p_caller := pgjobs._enter('_confined_targets', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    PERFORM pgjobs._require_self(p_caller, p_role);
    RETURN pgjobs._leave(ARRAY(SELECT c.oid::regclass
                   FROM pg_catalog.pg_class c
                  WHERE c.relrowsecurity
                    AND pgjobs._row_security_rule(
                            c.oid::regclass, p_role,
                            coalesce(has_table_privilege(p_role, c.oid, 'SELECT'), false)
                            OR pgjobs._reads_every_column(p_role, c.oid::regclass))
                  ORDER BY c.oid));
END
$$;
