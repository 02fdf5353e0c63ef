CREATE OR REPLACE FUNCTION pgjobs._require(p_target regclass, p_privilege text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one check of the calling role (pgjobs._caller) before a client
-- function acts on p_target. A client may only ask pgjobs to do what it
-- could do itself: submitting a delete needs DELETE on the target, a
-- backfill UPDATE, an export or a read through the mask SELECT (the kind
-- to privilege map: pgjobs._kind_privilege). Raises 42501 naming the
-- privilege.
--
-- Row-level security: pgjobs reads and writes the target as its own role,
-- which no policy confines, so a caller that a policy on the target would
-- confine (row security enabled, and the caller neither superuser nor
-- BYPASSRLS nor, unless FORCE ROW LEVEL SECURITY is set, the table's
-- owner) is refused with 42501, unless an administrator registered the
-- target with {"ignore_row_security": true}. Locks nothing.
DECLARE
    v_caller name := pgjobs._caller();
BEGIN
    IF NOT has_table_privilege(v_caller, p_target, p_privilege) THEN
        RAISE EXCEPTION 'permission denied: role % lacks % on %', v_caller, p_privilege, p_target
            USING ERRCODE = '42501',
            HINT = format('GRANT %s ON %s TO %I;', p_privilege, p_target, v_caller);
    END IF;
    IF pgjobs._row_security_confines(p_target, v_caller) THEN
        RAISE EXCEPTION 'permission denied: row-level security on % applies to role %, and '
                        'pgjobs cannot act under its policies', p_target, v_caller
            USING ERRCODE = '42501',
            HINT = 'Query the table directly (its policies apply), use a role with BYPASSRLS, '
                   'or, if the policies need not bind pgjobs'' clients, an administrator may '
                   'register the target with {"ignore_row_security": true}.';
    END IF;
END
$$;
