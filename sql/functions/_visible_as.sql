CREATE OR REPLACE FUNCTION pgjobs._visible_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_after text,
    p_limit integer)
RETURNS jsonb[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.visible, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.visible, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- One keyset page of the rows of (p_target, p_scope) that match p_filter
-- and are not masked by a pending delete, ordered by key, starting after
-- key p_after, as an array of to_jsonb(row) (pgjobs.visible returns its
-- elements; a column holding an array whose lower bounds are not all 1 as
-- its PostgreSQL text, pgjobs._array_bounds_test). Walks the (scope, key) index: the cost of
-- a page does not grow with its position. While a whole-scope delete is
-- pending, the condition of pgjobs._mask_candidates (implied by the mask)
-- lets an index on (scope, created_at) find the few rows that can still
-- be visible instead of walking past every doomed one. Raises 22023 for a bad filter,
-- scope, cursor or limit. SECURITY DEFINER for pgjobs_client; the caller
-- needs SELECT on the target and, when pgjobs.allowed_scopes is set,
-- p_scope in it (42501). Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_scope text;
    v_key_type text;
    v_hint text;
    v_canonical text;
    v_mask text;
    v_query text;
    v_rows jsonb[];
    v_scope_type text;
    v_row text := 'to_jsonb(t.*)';
    v_json_row text;
    v_bounds text;
    v_arrays boolean;
BEGIN
    -- Fixed cost: every pinned call costs a GUC save and restore, more than
    -- a row of the page, so the checks below call as few as they can
    -- without leaving the one place each rule lives (issue 11).
    p_caller := pgjobs._enter('visible', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- The call just entered, passed on: pgjobs._require_entry would read it
    -- back from the call stack through pgjobs._entered (~80 us a read).
    v_reg := pgjobs._target_recent(p_target, true, ARRAY['visible', p_caller]);
    -- Both columns' full types in one catalog read by name (pgjobs._column_type's
    -- format_type(atttypid, atttypmod)); a column that is gone is left to
    -- pgjobs._column_type, which raises its 42703 where it did before.
    -- (By name: a read of every column, as the json test below makes, is
    -- planned again on every call, ~40-90 us; issue 11.)
    SELECT max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = v_reg.key_column),
           max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = v_reg.scope_column),
           -- and whether any column's type may hold an array: the first test
           -- of pgjobs._array_bounds_row, read here in the same statement
           -- (its pinned call and its own read skipped for most targets)
           EXISTS (SELECT FROM pg_catalog.pg_attribute c
                     JOIN pg_catalog.pg_type ty ON ty.oid = c.atttypid
                    WHERE c.attrelid = p_target AND c.attnum > 0 AND NOT c.attisdropped
                      AND (ty.typcategory = 'A' OR ty.typtype IN ('c', 'd')))
      INTO v_key_type, v_scope_type, v_arrays
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attname IN (v_reg.key_column, v_reg.scope_column)
       AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_key_type IS NULL THEN
        v_key_type := pgjobs._column_type(p_target, v_reg.key_column);  -- 42703
    END IF;
    -- pgjobs._require for the role pgjobs._enter returned (pgjobs._caller):
    -- the same one check, two pinned calls fewer.
    PERFORM pgjobs._require_role(p_caller, p_target, 'SELECT', NULL);
    -- pgjobs._scope_allowed allows every scope while pgjobs.allowed_scopes
    -- is unset or empty (its first test): only a set list is checked.
    IF btrim(coalesce(current_setting('pgjobs.allowed_scopes', true), '')) <> '' THEN
        PERFORM pgjobs._require_scope(p_target, p_scope);
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 10000, not %', p_limit
            USING ERRCODE = '22023', HINT = 'Page through with p_after instead.';
    END IF;
    -- The canonical scope (22023 for a bad one): the mask's jobs store it.
    v_canonical := pgjobs._canonical_scope(v_reg, p_scope);
    -- pgjobs._mask only when a delete of the scope is pending: one probe of
    -- jobs_pending_writers_idx, its own query's condition and a superset of
    -- the jobs it reads, instead of a pinned call in every read (issue 11).
    v_mask := 'true';
    IF EXISTS (SELECT FROM pgjobs.jobs j
                WHERE j.target = p_target AND j.scope = v_canonical
                  AND j.writes AND j.kind = 'delete'
                  AND j.status IN ('queued', 'running', 'paused')) THEN
        v_mask := pgjobs._mask(p_target, v_canonical);
    END IF;
    IF v_scope_type IS NULL THEN
        v_scope_type := pgjobs._column_type(p_target, v_reg.scope_column);  -- 42703
    END IF;
    v_scope := format('%L::%s', v_canonical, v_scope_type);
    -- The cursor goes in as a literal of the key's full type, unchecked: a
    -- value that is not of that type fails the page's planning with a data
    -- exception, and only then is it checked for a 22023 that names it.
    -- The row is t.*, never a bare t: a column named t would be taken for it
    -- (PostgreSQL resolves a bare name to a column first).
    v_query := format(
        'FROM %s t WHERE t.%I = %s%s AND (%s) AND (%s) AND (%s) '
        'ORDER BY t.%I LIMIT %s',
        p_target, v_reg.scope_column, v_scope,
        CASE WHEN p_after IS NULL THEN ''
             ELSE format(' AND t.%I > %L::%s', v_reg.key_column, p_after, v_key_type) END,
        -- (NULL is not {}: pgjobs.compile_filter refuses it, 22023.)
        CASE WHEN p_filter = '{}' THEN 'true'
             ELSE pgjobs.compile_filter(p_target, p_filter) END,
        -- (no pending delete, no short cut to look for)
        CASE WHEN v_mask = 'true' THEN 'true' ELSE pgjobs._mask_candidates(p_target, v_canonical) END,
        v_mask, v_reg.key_column,
        p_limit);
    -- The page as to_jsonb(t.*) first. For a target with json columns (a
    -- domain over json too) to_jsonb casts each to jsonb, which raises on
    -- a value json holds and jsonb refuses (a \u0000 escape, a lone
    -- surrogate, a number past numeric's range: a data exception), and one
    -- such row failed every page of its scope. So a page that fails so is
    -- read again with the row as to_jsonb(t) would give it with each column
    -- whose type holds json (itself, a domain over it, an array or a
    -- composite of it, nested) read through pgjobs._json_value_jsonb: each
    -- json value jsonb refuses, wherever it sits, comes back as a JSON
    -- string of its text (pgjobs._json_as_jsonb), every other value as
    -- to_jsonb gives it. Only
    -- then are the columns read: that read (every column, its type's kind)
    -- cost more than a page's planning in every call (issue 11).
    -- An array whose lower bounds are not all 1 ('[0:1]={a,b}'), wherever
    -- it sits in a column's value, makes that column read as its
    -- PostgreSQL text, a JSON string (pgjobs._array_bounds_test, the one
    -- rule it shares with the jsonl export): to_jsonb writes it as if it
    -- started at 1, and the value read back was another one. Only columns
    -- whose type may hold an array are looked at (the test of each value is
    -- in the page's query); a value whose arrays start at 1 reads as ever.
    -- (CASE: the pinned call, a GUC save and restore, only for such a
    -- column, never for the scalars of most targets.) The text is built by
    -- a walk of the catalog that cost more than the page (~0.4 ms for a few
    -- such columns), so pgjobs._array_bounds_row keeps it, sealed, in the
    -- session until a DDL commits (the DDL fence's epoch).
    -- The text is printed in fixed styles (pgjobs._value_text): in the
    -- caller's DateStyle or IntervalStyle it read back as another value.
    -- (NULL without a column whose type may hold an array, as
    -- pgjobs._array_bounds_row's own first test returns)
    IF v_arrays THEN
        v_bounds := pgjobs._array_bounds_row(p_target);
    END IF;
    LOOP
        BEGIN
            EXECUTE format('SELECT ARRAY(SELECT %s%s %s)', v_row, coalesce(v_bounds, ''), v_query)
               INTO v_rows;
            EXIT;
        EXCEPTION WHEN data_exception THEN
            IF v_row = 'to_jsonb(t.*)' THEN
                -- NULL: no column holds json, the error stands.
                BEGIN
                    SELECT CASE WHEN bool_or(j.expr IS NOT NULL) THEN
                               format('(SELECT to_jsonb(x.*) FROM (SELECT %s) x)',
                                      string_agg(CASE WHEN j.expr IS NOT NULL
                                                      THEN format('%s AS %I', j.expr, a.attname)
                                                      ELSE format('t.%I', a.attname) END,
                                                 ', ' ORDER BY a.attnum)) END
                      INTO v_json_row
                      FROM pg_catalog.pg_attribute a
                      -- (json anywhere in the column's type: itself, a domain,
                      -- an array's elements, a composite's fields, nested)
                      CROSS JOIN LATERAL (SELECT pgjobs._json_value_jsonb(
                                              format('t.%I', a.attname), a.atttypid::regtype) AS expr) j
                     WHERE a.attrelid = p_target
                       AND a.attnum > 0 AND NOT a.attisdropped;
                    -- (A read too large to build, 54000: none, the page's own
                    -- error stands, as before there was one.)
                EXCEPTION WHEN program_limit_exceeded THEN
                    v_json_row := NULL;
                END;
            END IF;
            IF v_json_row IS NULL OR v_row = v_json_row THEN
                IF p_after IS NOT NULL THEN
                    BEGIN
                        EXECUTE format('SELECT %L::%s', p_after, v_key_type);
                    EXCEPTION WHEN data_exception THEN
                        RAISE EXCEPTION 'after % is not a valid % (key column %)',
                            quote_literal(p_after), v_key_type, v_reg.key_column
                            USING ERRCODE = '22023',
                            HINT = 'Pass the key of the last row of the previous page.';
                    END;
                END IF;
                RAISE;
            END IF;
            v_row := v_json_row;  -- and read the page again
        WHEN undefined_table OR undefined_object OR undefined_function
             OR ambiguous_function OR invalid_name OR syntax_error
             OR invalid_schema_name THEN
            -- The cursor of an oid-alias key (a regclass) is a name its
            -- input found no object for, read with pgjobs' search_path (an
            -- unqualified name of the caller's schema): 22023 with
            -- pgjobs._oid_alias_hint's hint, not the raw lookup error. (The
            -- filter's values were read before, by pgjobs.compile_filter.)
            v_hint := pgjobs._oid_alias_hint(v_key_type::regtype, SQLSTATE);
            IF p_after IS NOT NULL AND v_hint IS NOT NULL THEN
                RAISE EXCEPTION 'after % is not a valid % (key column %): %',
                    quote_literal(p_after), v_key_type, v_reg.key_column, SQLERRM
                    USING ERRCODE = '22023', HINT = v_hint;
            END IF;
            RAISE;
        END;
    END LOOP;
    RETURN pgjobs._leave(v_rows);
END
$$;
