CREATE OR REPLACE FUNCTION pgjobs.visible_count(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- How many rows of (p_target, p_scope) match p_filter and are not masked
-- by a pending delete: the count a reader will see once the deletes end.
-- Raises 22023 for a bad filter or scope. SECURITY DEFINER for
-- pgjobs_client; the caller needs SELECT on the target and, when
-- pgjobs.allowed_scopes is set, p_scope in it (42501). Locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._visible_count_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._visible_count_as(current_user, p_target, p_scope, p_filter) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.visible_count(regclass, text, jsonb) IS
'Counts the scope''s rows matching the filter that are not masked by a pending delete.';
