CREATE OR REPLACE FUNCTION pgjobs._unknown_fields(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_paths text[],
    OUT p_unknown text[],
    OUT p_complete boolean,
    OUT p_rows_read bigint)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Which of the document paths p_paths (dotted, as a filter or an export's
-- columns write them) no row of scope p_scope (canonical text) of the
-- target has. A row has a path when `doc -> 'a' -> 'b'` is not SQL NULL:
-- a field holding JSON null exists, and a path never indexes into an
-- array, exactly as the filter compiler reads it.
--
-- Cost, bounded: the scope is read in key order on the (scope, key) index,
-- in chunks of 1,000, 10,000, then 100,000 rows, each chunk one aggregate
-- over the paths still missing; the walk stops as soon as every path has
-- been seen (a field that most rows have costs one chunk of 1,000 rows), at
-- the end of the scope, or after pgjobs.field_check_rows rows (a session
-- setting; default and maximum 1,000,000; minimum 1,000). Past that bound
-- the paths not seen are returned with p_complete = false: the caller
-- refuses them (unknown until proven known). An empty scope has no unknown
-- paths (a job on it changes nothing). p_rows_read: the rows read.
-- Sets jit off (and enable_indexscan off around the chunk aggregates) and
-- restores them. Locks nothing.
DECLARE
    v_setting text := current_setting('pgjobs.field_check_rows', true);
    v_limit bigint := 1000000;
    v_chunk bigint := 1000;
    v_key_type text;
    v_scope text;
    v_after text;
    v_upper text;
    v_range text;
    v_exprs text[];
    v_found boolean[];
    v_rows bigint;
    v_missing text[];
    v_path text;
    v_ref text;
    v_seg text;
    v_jit text := current_setting('jit');
    v_indexscan text := current_setting('enable_indexscan');
BEGIN
    p_unknown := '{}';
    p_complete := true;
    p_rows_read := 0;
    SELECT coalesce(array_agg(DISTINCT p ORDER BY p), '{}') INTO v_missing
      FROM unnest(p_paths) p WHERE p IS NOT NULL;
    IF cardinality(v_missing) = 0 OR p_reg.document_column IS NULL THEN
        RETURN;
    END IF;
    IF v_setting ~ '^\s*\d{1,10}\s*$' THEN
        v_limit := least(greatest(v_setting::bigint, 1000), 1000000);
    END IF;
    v_key_type := pgjobs._column_type(p_reg.target, p_reg.key_column);
    v_scope := pgjobs._scope_literal(p_reg, p_scope);

    PERFORM set_config('jit', 'off', true);
    LOOP
        v_chunk := least(v_chunk, v_limit - p_rows_read);
        -- The chunk's upper key, from the (scope, key) index alone (NULL:
        -- the chunk reaches the end of the scope), as pgjobs._run_page pages.
        v_upper := pgjobs._nth_key(p_reg.target, p_reg.scope_column, v_scope, p_reg.key_column,
                                   CASE WHEN v_after IS NULL THEN ''
                                        ELSE format(' AND t.%I > %L::%s', p_reg.key_column,
                                                    v_after, v_key_type) END,
                                   v_chunk - 1);
        v_range := concat_ws(' AND ',
            format('t.%I = %s', p_reg.scope_column, v_scope),
            CASE WHEN v_after IS NOT NULL THEN
                format('t.%I > %L::%s', p_reg.key_column, v_after, v_key_type) END,
            CASE WHEN v_upper IS NOT NULL THEN
                format('t.%I <= %L::%s', p_reg.key_column, v_upper, v_key_type) END);
        v_exprs := '{}';
        FOREACH v_path IN ARRAY v_missing LOOP
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
        IF p_rows_read = 0 AND v_rows = 0 THEN
            PERFORM set_config('jit', v_jit, true);
            RETURN;  -- an empty scope
        END IF;
        p_rows_read := p_rows_read + v_rows;
        SELECT coalesce(array_agg(m.path ORDER BY m.path), '{}') INTO v_missing
          FROM unnest(v_missing, v_found) AS m(path, found) WHERE NOT m.found;
        EXIT WHEN cardinality(v_missing) = 0 OR v_upper IS NULL;
        IF p_rows_read >= v_limit THEN
            p_complete := false;
            EXIT;
        END IF;
        v_after := v_upper;
        v_chunk := least(v_chunk * 10, 100000);
    END LOOP;
    PERFORM set_config('jit', v_jit, true);
    -- Each once, in the order the caller listed them.
    SELECT coalesce(array_agg(f.p ORDER BY f.o), '{}') INTO p_unknown
      FROM (SELECT u.p, min(u.o) AS o
              FROM unnest(p_paths) WITH ORDINALITY AS u(p, o)
             WHERE u.p = ANY (v_missing) GROUP BY u.p) f;
END
$$;
