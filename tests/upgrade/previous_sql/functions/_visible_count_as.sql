CREATE OR REPLACE FUNCTION pgjobs._visible_count_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_filter jsonb)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET jit = off
AS $$
-- The body of pgjobs.visible_count, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.visible_count, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- How many rows of (p_target, p_scope) match p_filter and are not masked
-- by a pending delete: the count a reader will see once the deletes end.
-- Raises 22023 for a bad filter or scope. SECURITY DEFINER for
-- pgjobs_client; the caller needs SELECT on the target and, when
-- pgjobs.allowed_scopes is set, p_scope in it (42501). Locks nothing.
-- jit off, as for pgjobs.preview's counts: a pending delete's sub-select
-- over pgjobs.job_exclusions is costed as one probe per row even when the
-- plan hashes it, which put a 100,000-row scope's count past
-- jit_optimize_above_cost; compiling then took 0.3-0.5 s of a count that
-- runs in 0.1-0.2 s.
DECLARE
    v_reg pgjobs.target_registry;
    v_canonical text;
    v_mask text;
    v_query text;
    v_count bigint;
BEGIN
    p_caller := pgjobs._enter('visible_count', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- The call just entered, passed on (as pgjobs._visible_as).
    v_reg := pgjobs._target_recent(p_target, true, ARRAY['visible_count', p_caller]);
    -- As pgjobs._visible_as: pgjobs._require for the role pgjobs._enter
    -- returned, and the allowed_scopes check only when the list is set.
    PERFORM pgjobs._require_role(p_caller, p_target, 'SELECT', NULL);
    IF btrim(coalesce(current_setting('pgjobs.allowed_scopes', true), '')) <> '' THEN
        PERFORM pgjobs._require_scope(p_target, p_scope);
    END IF;
    -- The canonical scope (22023 for a bad one): the mask's jobs store it.
    v_canonical := pgjobs._canonical_scope(v_reg, p_scope);
    -- The count forms (p_count): a long exclude list is read once into a
    -- hash table rather than probed once per row of the scope.
    -- pgjobs._mask only when a delete of the scope is pending (as pgjobs._visible_as).
    v_mask := 'true';
    IF EXISTS (SELECT FROM pgjobs.jobs j
                WHERE j.target = p_target AND j.scope = v_canonical
                  AND j.writes AND j.kind = 'delete'
                  AND j.status IN ('queued', 'running', 'paused')) THEN
        v_mask := pgjobs._mask(p_target, v_canonical, true);
    END IF;
    -- pgjobs._mask_candidates: implied by the mask, indexable (see _visible_as).
    v_query := format('SELECT count(*) FROM %s t WHERE t.%I = %s AND (%s) AND (%s) AND (%s)',
        p_target, v_reg.scope_column,
        format('%L::%s', v_canonical, pgjobs._column_type(p_target, v_reg.scope_column)),
        -- (NULL is not {}: pgjobs.compile_filter refuses it, 22023.)
        CASE WHEN p_filter = '{}' THEN 'true'
             ELSE pgjobs.compile_filter(p_target, p_filter) END,
        -- (no pending delete, no short cut to look for)
        CASE WHEN v_mask = 'true' THEN 'true'
             ELSE pgjobs._mask_candidates(p_target, v_canonical, true) END,
        v_mask);
    EXECUTE v_query INTO v_count;
    RETURN pgjobs._leave(v_count);
END
$$;
