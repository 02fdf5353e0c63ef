CREATE OR REPLACE FUNCTION pgjobs.visible(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}',
    p_after text DEFAULT NULL,
    p_limit integer DEFAULT 100)
RETURNS SETOF jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- One keyset page of the rows of (p_target, p_scope) that match p_filter
-- and are not masked by a pending delete, ordered by key, starting after
-- key p_after, as to_jsonb(row). Walks the (scope, key) index: the cost of
-- a page does not grow with its position. Raises 22023 for a bad filter,
-- scope, cursor or limit. For pgjobs_client; the caller
-- needs SELECT on the target and, when pgjobs.allowed_scopes is set,
-- p_scope in it (42501). Locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._visible_as checks that role's rights.
DECLARE
    v_row jsonb;
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    FOREACH v_row IN ARRAY pgjobs._visible_as(current_user, p_target, p_scope, p_filter, p_after, p_limit) AS sealed_call LOOP
        RETURN NEXT v_row;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs.visible(regclass, text, jsonb, text, integer) IS
'One keyset page (ordered by key, after key p_after, at most p_limit rows) of the scope''s rows '
'matching the filter and not masked by a pending delete, as to_jsonb(row).';
