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
-- a limit out of 1..10000, pgjobs.allowed_scopes set and p_scope not
-- allowed by it (pgjobs._scope_allowed, the one test the full way's
-- pgjobs._require_scope refuses on, read at each call), row-level security
-- enabled on the table (pgjobs refuses a confined role, a read as the
-- caller would apply its policies; pgjobs.visible tests the caller's
-- SELECT on the table itself), no registration, a trust verdict this
-- session has not reached within 1 s (pgjobs._verdict_fresh; the full way
-- checks and keeps it), a column whose type may hold an array, or a delete
-- pending on the scope (the mask).
-- Raises only what pgjobs._canonical_scope raises for a bad scope
-- (pgjobs.visible then takes the full way, which raises it in its order).
-- SECURITY DEFINER for pgjobs_client: it reads the registry and the jobs.
-- It tells a caller nothing pgjobs.visible would not: NULL to any call
-- but pgjobs.visible's own (the frame right below this one on the call
-- stack, read as pgjobs._enter reads it), so a direct
-- call, or one from a SECURITY DEFINER function whose owner may not read
-- the table run by a session whose role may, learns no registration nor
-- pending delete; and NULL unless the session's role (its SET ROLE role,
-- or its login role without one: a role the session may act as, whatever
-- SECURITY DEFINER function runs) may SELECT the table, where
-- pgjobs.visible has tested its current_user.
-- Locks nothing.
DECLARE
    v_plan record;
    v_canonical text;
    v_stack text[];
    v_ctx text;
    v_lines text[];
    v_at integer;
    v_prefix text;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RETURN NULL;
    END IF;
    -- Only for pgjobs.visible's own call: the frame right below this one
    -- must be the PL/pgSQL frame of pgjobs.visible itself (a role cannot
    -- create functions in schema pgjobs, and a name it chooses prints in
    -- double quotes; an SQL statement's line, even one whose text imitates
    -- that frame on a second line, is not that frame). The frames are read
    -- as pgjobs._enter reads them: at line 1's text before this function's
    -- name, or by pgjobs._stack in a language that prints the statement
    -- and the line number there (zh_CN); a call of pgjobs._stack in every
    -- page cost ~0.1 ms, more than a third of the page itself. Its call
    -- through SPI, after an error escaped it earlier in the transaction,
    -- has an SPI line there: NULL, and that call takes the full way,
    -- answering alike.
    GET DIAGNOSTICS v_ctx = PG_CONTEXT;
    v_lines := string_to_array(v_ctx, E'\n');
    v_at := strpos(v_lines[1], 'pgjobs._visible_page(');
    v_prefix := left(v_lines[1], v_at - 1);
    IF v_at = 0 OR v_prefix ~ '[0-9]' THEN
        v_stack := pgjobs._stack();  -- an assignment: a frame "at" a statement
        v_prefix := '';
        v_lines := v_stack;
    END IF;
    IF NOT coalesce(starts_with(v_lines[2], v_prefix || 'pgjobs.visible('), false) THEN
        RETURN NULL;
    END IF;
    -- One statement (each costs its executor's start and end): the
    -- registration of a table the session's role may read and that has no
    -- row-level security, the key's and the scope's full types, and whether
    -- any column's type may hold an array, whose values the full way tests
    -- (pgjobs._array_bounds_row). (A json value to_jsonb refuses fails the
    -- page, and pgjobs.visible takes the full way, which reads it again.)
    SELECT r AS reg,
           (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_target AND a.attname = r.key_column
               AND a.attnum > 0 AND NOT a.attisdropped) AS key_type,
           (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_target AND a.attname = r.scope_column
               AND a.attnum > 0 AND NOT a.attisdropped) AS scope_type,
           EXISTS (SELECT FROM pg_catalog.pg_attribute c
                     JOIN pg_catalog.pg_type ty ON ty.oid = c.atttypid
                    WHERE c.attrelid = p_target AND c.attnum > 0 AND NOT c.attisdropped
                      AND (ty.typcategory = 'A' OR ty.typtype IN ('c', 'd'))) AS arrays
      INTO v_plan
      FROM pgjobs.target_registry r
     WHERE r.target = p_target
       AND has_table_privilege(CASE current_setting('role') WHEN 'none' THEN session_user
                                    ELSE current_setting('role')::name END,
                               p_target, 'SELECT')
       AND NOT (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = p_target);
    IF NOT FOUND OR v_plan.key_type IS NULL OR v_plan.scope_type IS NULL OR v_plan.arrays
       OR NOT pgjobs._verdict_fresh('trusted_' || p_target::oid::text, p_target::oid::text) THEN
        RETURN NULL;
    END IF;
    -- A session confined by pgjobs.allowed_scopes (the full way's own
    -- condition): only a scope the full way would let through is read here;
    -- any other (outside the list, a malformed or empty list) goes the full
    -- way, whose pgjobs._require_scope refuses it with its own message.
    IF btrim(coalesce(current_setting('pgjobs.allowed_scopes', true), '')) <> ''
       AND NOT pgjobs._scope_allowed(p_target, p_scope) THEN
        RETURN NULL;
    END IF;
    v_canonical := pgjobs._canonical_scope(v_plan.reg, p_scope);  -- 22023
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
                  p_target, (v_plan.reg).scope_column, v_canonical, v_plan.scope_type,
                  CASE WHEN p_after IS NULL THEN ''
                       ELSE format(' AND t.%I > %L::%s', (v_plan.reg).key_column, p_after,
                                   v_plan.key_type) END,
                  (v_plan.reg).key_column, p_limit);
END
$$;
