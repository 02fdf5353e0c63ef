CREATE OR REPLACE FUNCTION pgjobs._require_self(p_caller name, p_role name)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A SECURITY DEFINER helper that takes a role (pgjobs._confined_targets_as,
-- pgjobs._row_security_confines_as) answers only about its caller p_caller
-- (the current_user of its entry point, pgjobs._enter) or a role whose
-- privileges p_caller has (a member with INHERIT; a superuser has every
-- role's): what it says about such a role, p_caller could learn by reading
-- as it. Any other role is refused with 42501, before anything is read,
-- whether or not that role exists: a client learns nothing about another
-- role's standing with pgjobs. Locks nothing.
BEGIN
    IF p_role IS NULL
       OR (p_role <> p_caller
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                            WHERE r.rolname = p_role
                              AND pg_catalog.pg_has_role(p_caller, r.oid, 'USAGE'))) THEN
        RAISE EXCEPTION 'permission denied: role % may only ask pgjobs about itself', p_caller
            USING ERRCODE = '42501',
                  HINT = 'Pass CURRENT_USER as the role (or SET ROLE to the role first).';
    END IF;
END
$$;
