CREATE OR REPLACE FUNCTION pgjobs._unknown_fields_from(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_paths text[],
    p_after text,
    p_read bigint,
    p_budget bigint,
    OUT p_missing text[],
    OUT p_rows_read bigint,
    OUT p_last text,
    OUT p_state text)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The walk of pgjobs._unknown_fields (the typo guard's look at a scope),
-- resumable: reads scope p_scope (canonical text) of the target in key
-- order after key p_after (text; NULL: from the start), p_read rows having
-- been read by the walk's earlier calls, and looks for the document paths
-- p_paths (dotted; the ones still unseen). A row has a path when
-- `doc -> 'a' -> 'b'` is not SQL NULL, as the filter compiler reads it.
--
-- Chunks of 1,000, 10,000, then 100,000 rows on the (scope, key) index (a
-- bitmap scan each, as pgjobs._run_page reads a page), each one aggregate
-- over the paths still missing. Stops, saying why in p_state:
--   'seen'   every path was seen;
--   'end'    the scope ended (p_rows_read 0 with p_after NULL: it is empty);
--   'bound'  p_rows_read reached pgjobs.field_check_rows (a session
--            setting; default and maximum 1,000,000, minimum 1,000): the
--            paths not seen count as unknown (unknown until proven known);
--   'budget' this call read p_budget rows or more (NULL: no budget) with the
--            scope not ended: call again with p_after = p_last and p_read =
--            p_rows_read.
-- p_missing: the paths not seen (distinct, sorted). p_last: the last key
-- read, as text (the function's fixed DateStyle and float digits).
-- Rows inserted behind the walk after a call are not read by the next: a
-- path only they have counts as unknown, never the other way round.
-- A bound that does not read back past the cursor (pgjobs._cursor_stuck)
-- raises 22000 naming the key column and type.
-- Sets jit off (and enable_indexscan off around the chunk aggregates) and
-- restores them. Locks nothing.
DECLARE
    v_setting text := current_setting('pgjobs.field_check_rows', true);
    v_limit bigint := 1000000;
    v_chunk bigint := 1000;
    v_read bigint := 0;
    v_key_type text;
    v_scope text;
    v_upper text;
    v_range text;
    v_exprs text[];
    v_found boolean[];
    v_rows bigint;
    v_path text;
    v_ref text;
    v_seg text;
    v_stuck text;
    v_jit text := current_setting('jit');
    v_indexscan text := current_setting('enable_indexscan');
BEGIN
    p_rows_read := coalesce(p_read, 0);
    p_last := p_after;
    SELECT coalesce(array_agg(DISTINCT p ORDER BY p), '{}') INTO p_missing
      FROM unnest(p_paths) p WHERE p IS NOT NULL;
    IF cardinality(p_missing) = 0 OR p_reg.document_column IS NULL THEN
        p_state := 'seen';
        RETURN;
    END IF;
    IF v_setting ~ '^\s*\d{1,10}\s*$' THEN
        v_limit := least(greatest(v_setting::bigint, 1000), 1000000);
    END IF;
    IF p_rows_read >= v_limit THEN
        p_state := 'bound';
        RETURN;
    END IF;
    v_key_type := pgjobs._column_type(p_reg.target, p_reg.key_column);
    v_scope := pgjobs._scope_literal(p_reg, p_scope);

    PERFORM set_config('jit', 'off', true);
    LOOP
        v_chunk := least(v_chunk, v_limit - p_rows_read);
        -- The chunk's upper key, from the (scope, key) index alone (NULL:
        -- the chunk reaches the end of the scope), as pgjobs._run_page pages.
        v_upper := pgjobs._nth_key(p_reg.target, p_reg.scope_column, v_scope, p_reg.key_column,
                                   CASE WHEN p_last IS NULL THEN ''
                                        ELSE format(' AND t.%I > %L::%s', p_reg.key_column,
                                                    p_last, v_key_type) END,
                                   v_chunk - 1);
        -- The cursor must move (pgjobs._cursor_stuck, as a page's): a key
        -- whose text does not read back as itself printed a bound the next
        -- chunk started from again, and a chunk of no row after it repeated
        -- forever, inside a submit, a claim or a page.
        v_stuck := pgjobs._cursor_stuck(p_reg.target, p_reg.key_column, v_key_type, p_last,
                                        v_upper);
        IF v_stuck IS NOT NULL THEN
            RAISE EXCEPTION 'the typo guard''s walk of scope % of %: %', quote_literal(pgjobs._clipped(p_scope)),
                p_reg.target, v_stuck
                USING ERRCODE = '22000',
                HINT = 'Register the table with a key of a type whose text reads back as the '
                       'same value (bigint, text, uuid); or pass the option '
                       '{"allow_unknown_fields": true}, which skips the walk.';
        END IF;
        v_range := concat_ws(' AND ',
            format('t.%I = %s', p_reg.scope_column, v_scope),
            CASE WHEN p_last IS NOT NULL THEN
                format('t.%I > %L::%s', p_reg.key_column, p_last, v_key_type) END,
            CASE WHEN v_upper IS NOT NULL THEN
                format('t.%I <= %L::%s', p_reg.key_column, v_upper, v_key_type) END);
        v_exprs := '{}';
        FOREACH v_path IN ARRAY p_missing LOOP
            v_ref := format('t.%I', p_reg.document_column);
            FOREACH v_seg IN ARRAY string_to_array(v_path, '.') LOOP
                v_ref := v_ref || format(' -> %L', v_seg);
            END LOOP;
            v_exprs := v_exprs || format('coalesce(bool_or((%s) IS NOT NULL), false)', v_ref);
        END LOOP;
        -- A bitmap scan of the range, as pgjobs._run_page reads a page.
        PERFORM set_config('enable_indexscan', 'off', true);
        EXECUTE format('SELECT count(*), ARRAY[%s] FROM %s t WHERE %s',
                       array_to_string(v_exprs, ', '), p_reg.target, v_range)
           INTO v_rows, v_found;
        PERFORM set_config('enable_indexscan', v_indexscan, true);
        p_rows_read := p_rows_read + v_rows;
        v_read := v_read + v_rows;
        SELECT coalesce(array_agg(m.path ORDER BY m.path), '{}') INTO p_missing
          FROM unnest(p_missing, v_found) AS m(path, found) WHERE NOT m.found;
        IF cardinality(p_missing) = 0 THEN
            p_state := 'seen';
        ELSIF v_upper IS NULL THEN
            p_state := 'end';
        ELSIF p_rows_read >= v_limit THEN
            p_state := 'bound';
        ELSIF v_read >= p_budget THEN
            p_state := 'budget';
        END IF;
        p_last := coalesce(v_upper, p_last);
        EXIT WHEN p_state IS NOT NULL;
        v_chunk := least(v_chunk * 10, 100000);
    END LOOP;
    PERFORM set_config('jit', v_jit, true);
END
$$;
