CREATE OR REPLACE FUNCTION pgjobs.visible_count(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- How many rows of (p_target, p_scope) match p_filter and are not masked
-- by a pending delete: the count a reader will see once the deletes end.
-- Raises 22023 for a bad filter or scope. SECURITY DEFINER for
-- pgjobs_client; the caller needs SELECT on the target. Locks nothing.
DECLARE
    v_reg pgjobs.target_registry := pgjobs._target(p_target);
    v_count bigint;
BEGIN
    PERFORM pgjobs._require(p_target, 'SELECT');
    EXECUTE format('SELECT count(*) FROM %s t WHERE t.%I = %s AND (%s) AND (%s)',
        p_target, v_reg.scope_column, pgjobs._scope_literal(v_reg, p_scope),
        CASE WHEN p_filter IS NULL OR p_filter = '{}' THEN 'true'
             ELSE pgjobs.compile_filter(p_target, p_filter) END,
        pgjobs._mask(p_target, p_scope))
       INTO v_count;
    RETURN v_count;
END
$$;

COMMENT ON FUNCTION pgjobs.visible_count(regclass, text, jsonb) IS
'Counts the scope''s rows matching the filter that are not masked by a pending delete.';
