CREATE OR REPLACE FUNCTION pgjobs._canonical_scope_as(
    p_caller name,
    p_target regclass,
    p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.canonical_scope, run as pgjobs' owner for the role
-- p_caller (the current_user of pgjobs.canonical_scope, its only permitted
-- caller: pgjobs._enter, 42501 otherwise); every check below is of
-- p_caller. The canonical text of p_scope (pgjobs._scope_entry: NULL when
-- it is no value of the scope column) on a registered target whose jobs
-- policy jobs_client_read can show p_caller (pgjobs._jobs_shown_on), and
-- only a trusted one (casting runs the scope type's code as this
-- function's owner: pgjobs._reach_roles' rule, as in
-- pgjobs._scope_allowed). Any other table: p_scope unchanged, so the
-- answer tells nothing of the registry. SECURITY DEFINER for
-- pgjobs_client: it reads pgjobs.target_registry. Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
BEGIN
    p_caller := pgjobs._enter('canonical_scope', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    IF p_target IS NULL OR p_scope IS NULL THEN
        -- as every client entry point: a NULL argument is a mistake, never a default
        RAISE EXCEPTION '% must not be null', CASE WHEN p_target IS NULL THEN 'target'
                                                   ELSE 'scope' END
            USING ERRCODE = '22023',
            HINT = 'Pass the table (regclass) and the scope as text, as to the submits.';
    END IF;
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF NOT FOUND OR NOT pgjobs._jobs_shown_on(p_caller, p_target)
       OR EXISTS (SELECT 1 FROM pgjobs._reach_roles(p_target) r WHERE r.lacks_rights) THEN
        RETURN pgjobs._leave(p_scope);
    END IF;
    RETURN pgjobs._leave(pgjobs._scope_entry(v_reg, p_scope));
END
$$;
