CREATE OR REPLACE FUNCTION pgjobs._require(p_target regclass, p_privilege text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- A client may only ask pgjobs to do what it could do itself: submitting a
-- delete needs DELETE on the target, a backfill UPDATE, an export or a
-- read through the mask SELECT. Raises 42501 naming the privilege.
DECLARE
    v_caller name := pgjobs._caller();
BEGIN
    IF NOT has_table_privilege(v_caller, p_target, p_privilege) THEN
        RAISE EXCEPTION 'permission denied: role % lacks % on %', v_caller, p_privilege, p_target
            USING ERRCODE = '42501',
            HINT = format('GRANT %s ON %s TO %I;', p_privilege, p_target, v_caller);
    END IF;
END
$$;
