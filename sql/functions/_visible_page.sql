CREATE OR REPLACE FUNCTION pgjobs._visible_page(
    p_target regclass,
    p_scope text,
    p_after text,
    p_limit integer)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The short way of pgjobs.visible (issue 11): the statement of one keyset
-- page of (p_target, p_scope), every row of the scope after key p_after
-- as to_jsonb(t.*), for pgjobs.visible to run as its caller, so that
-- PostgreSQL itself checks the caller's privileges on every read (a REVOKE
-- fires no event, so nothing of them is kept) and the page needs no check
-- by hand. NULL whenever the page is not that plain and pgjobs.visible
-- takes its full way (pgjobs._visible_as, which raises what it raises):
-- a limit out of 1..10000, pgjobs.allowed_scopes set, row-level security
-- enabled on the table (pgjobs refuses a confined role, a read as the
-- caller would apply its policies; pgjobs.visible tests the caller's
-- SELECT on the table itself), no registration, a trust verdict this
-- session has not reached within 1 s (pgjobs._verdict_fresh; the full way
-- checks and keeps it), a column whose type may hold an array, or a delete
-- pending on the scope (the mask).
-- Raises only what pgjobs._canonical_scope raises for a bad scope
-- (pgjobs.visible then takes the full way, which raises it in its order).
-- SECURITY DEFINER for pgjobs_client: it reads the registry and the jobs.
-- It tells a caller nothing pgjobs.visible would not: NULL unless the
-- session's login role (session_user, which any SET ROLE of the session
-- can RESET back to) may SELECT the table, so a direct call learns no
-- registration nor pending delete of a table that role may not read.
-- Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_key_type text;
    v_scope_type text;
    v_other boolean;
    v_canonical text;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000
       OR btrim(coalesce(current_setting('pgjobs.allowed_scopes', true), '')) <> ''
       OR has_table_privilege(session_user, p_target, 'SELECT') IS NOT TRUE
       OR (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = p_target) IS NOT FALSE THEN
        RETURN NULL;
    END IF;
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF NOT FOUND
       OR NOT pgjobs._verdict_fresh('trusted_' || p_target::oid::text, p_target::oid::text) THEN
        RETURN NULL;
    END IF;
    -- The key's and the scope's full types, and whether any column's type
    -- may hold an array, whose values the full way tests
    -- (pgjobs._array_bounds_row). (A json value to_jsonb refuses fails the
    -- page, and pgjobs.visible takes the full way, which reads it again.)
    SELECT max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = v_reg.key_column),
           max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = v_reg.scope_column),
           EXISTS (SELECT FROM pg_catalog.pg_attribute c
                     JOIN pg_catalog.pg_type ty ON ty.oid = c.atttypid
                    WHERE c.attrelid = p_target AND c.attnum > 0 AND NOT c.attisdropped
                      AND (ty.typcategory = 'A' OR ty.typtype IN ('c', 'd')))
      INTO v_key_type, v_scope_type, v_other
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attname IN (v_reg.key_column, v_reg.scope_column)
       AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_key_type IS NULL OR v_scope_type IS NULL OR v_other THEN
        RETURN NULL;
    END IF;
    v_canonical := pgjobs._canonical_scope(v_reg, p_scope);  -- 22023
    -- the probe of pgjobs._visible_as: a pending delete makes the mask
    IF EXISTS (SELECT FROM pgjobs.jobs j
                WHERE j.target = p_target AND j.scope = v_canonical
                  AND j.writes AND j.kind = 'delete'
                  AND j.status IN ('queued', 'running', 'paused')) THEN
        RETURN NULL;
    END IF;
    -- The statement of pgjobs._visible_as's page with nothing masked and no
    -- filter: the cursor a literal of the key's type (a bad one fails it,
    -- and the full way names it), the row t.*, never a bare t.
    RETURN format('SELECT ARRAY(SELECT to_jsonb(t.*) FROM %s t WHERE t.%I = %L::%s%s '
                  'ORDER BY t.%I LIMIT %s)',
                  p_target, v_reg.scope_column, v_canonical, v_scope_type,
                  CASE WHEN p_after IS NULL THEN ''
                       ELSE format(' AND t.%I > %L::%s', v_reg.key_column, p_after, v_key_type) END,
                  v_reg.key_column, p_limit);
END
$$;
