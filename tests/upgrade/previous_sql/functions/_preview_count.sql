CREATE OR REPLACE FUNCTION pgjobs._preview_count(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_predicate text,
    p_mask text,
    p_limit_ms integer)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The counts of pgjobs.preview for scope p_scope (canonical text): the rows
-- of the scope, the rows matching p_predicate that p_mask (the pending
-- deletes) leaves, and the first 10 matching keys in key order (canonical
-- text, pgjobs._canonical_text: what an exclude list takes).
--
-- Time-bounded, because a statement_timeout set inside a function does not
-- re-arm the running statement's timer. A scope the planner estimates at no
-- more than p_limit_ms * 1,000 rows is counted in one statement (exact; it
-- may run in parallel, as a plain count(*) does; with stale statistics it
-- can take longer than the limit). A larger one is counted in key ranges
-- of 1,000, 10,000, then 100,000 rows found on the (scope, key) index (one
-- aggregate statement per range, read through a bitmap scan as the
-- runner's pages are), and the clock is checked between ranges. Past
-- p_limit_ms the rest of the scope (keys after the last range) is
-- estimated from a TABLESAMPLE SYSTEM of about 2000 blocks of the table,
-- "exact" becomes false, and "counted_rows" says how many rows were
-- counted exactly. The sample then holds the matches found so far.
-- Each count reads the match test as a column of a sub-select (OFFSET 0
-- keeps it there): an expression in the scan's output is costed as run
-- once per row of the scan, one in the aggregate's FILTER as run once, so
-- only the former lets the planner hash a pending delete's long exclude
-- list (p_mask's count form, pgjobs._mask) instead of probing it per row.
-- VOLATILE: it reads the clock. Sets jit off (and enable_indexscan off
-- around the range counts) and restores them. Locks nothing.
DECLARE
    v_deadline timestamptz := clock_timestamp() + p_limit_ms * interval '1 millisecond';
    v_t0 timestamptz := clock_timestamp();
    v_jit text := current_setting('jit');
    v_indexscan text := current_setting('enable_indexscan');
    v_key_type text := pgjobs._column_type(p_reg.target, p_reg.key_column);
    v_scope text := pgjobs._scope_literal(p_reg, p_scope);
    v_chunk bigint := 1000;
    v_after text;
    v_upper text;
    v_range text;
    v_rows bigint;
    v_matches bigint;
    v_scope_rows bigint := 0;
    v_total bigint := 0;
    v_counted bigint;
    v_sample text[] := '{}'::text[];
    v_more text[];
    v_exact boolean := true;
    v_blocks numeric;
    v_pct numeric;
    v_plan json;  -- what EXPLAIN (FORMAT JSON) returns
    v_stuck text;
BEGIN
    PERFORM set_config('jit', 'off', true);
    -- A scope the planner expects to count within the limit (at a
    -- conservative 1,000 rows per ms) is counted in one statement, which
    -- the planner may run in parallel: the cost of a plain count(*). The
    -- sample then comes from the scope's first 100,000 keys.
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s WHERE %I = %s',
                   p_reg.target, p_reg.scope_column, v_scope) INTO v_plan;
    IF (v_plan::jsonb #>> '{0,Plan,Plan Rows}')::numeric <= p_limit_ms * 1000.0 THEN
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE s.m) FROM ('
                       'SELECT coalesce((%s), false) AND (%s) AS m '
                       'FROM %s WHERE %I = %s OFFSET 0) s', p_predicate, p_mask, p_reg.target,
                       p_reg.scope_column, v_scope)
           INTO v_scope_rows, v_total;
        IF v_total > 0 THEN
            v_upper := pgjobs._nth_key(p_reg.target, p_reg.scope_column, v_scope,
                                       p_reg.key_column, '', 99999);
            EXECUTE format('SELECT ARRAY(SELECT pgjobs._canonical_text(t.%1$I) FROM %2$s t '
                           'WHERE t.%3$I = %4$s%5$s AND coalesce((%6$s), false) AND (%7$s) '
                           'ORDER BY t.%1$I LIMIT 10)',
                           p_reg.key_column, p_reg.target, p_reg.scope_column, v_scope,
                           CASE WHEN v_upper IS NULL THEN ''
                                ELSE format(' AND t.%I <= %L::%s', p_reg.key_column, v_upper,
                                            v_key_type) END,
                           p_predicate, p_mask)
               INTO v_sample;
        END IF;
        PERFORM set_config('jit', v_jit, true);
        RETURN jsonb_build_object(
            'matches', v_total, 'exact', true, 'scope_rows', v_scope_rows,
            'sample', to_jsonb(v_sample), 'counted_rows', v_scope_rows,
            'elapsed_ms', round(extract(epoch FROM clock_timestamp() - v_t0) * 1000));
    END IF;
    LOOP
        v_upper := pgjobs._nth_key(p_reg.target, p_reg.scope_column, v_scope, p_reg.key_column,
                                   CASE WHEN v_after IS NULL THEN ''
                                        ELSE format(' AND t.%I > %L::%s', p_reg.key_column,
                                                    v_after, v_key_type) END,
                                   v_chunk - 1);
        -- The cursor must move (pgjobs._cursor_stuck): a bound that reads
        -- back as the cursor counted the same rows again until the deadline.
        v_stuck := pgjobs._cursor_stuck(p_reg.target, p_reg.key_column, v_key_type, v_after,
                                        v_upper);
        IF v_stuck IS NOT NULL THEN
            RAISE EXCEPTION 'the preview''s count of scope % of %: %',
                quote_literal(pgjobs._clipped(p_scope)), p_reg.target, v_stuck
                USING ERRCODE = '22000',
                HINT = 'Register the table with a key of a type whose text reads back as the '
                       'same value (bigint, text, uuid).';
        END IF;
        v_range := concat_ws(' AND ',
            format('%I = %s', p_reg.scope_column, v_scope),
            CASE WHEN v_after IS NOT NULL THEN
                format('%I > %L::%s', p_reg.key_column, v_after, v_key_type) END,
            CASE WHEN v_upper IS NOT NULL THEN
                format('%I <= %L::%s', p_reg.key_column, v_upper, v_key_type) END);
        -- The range through a bitmap scan of the (scope, key) index (no
        -- plain index scans: see pgjobs._run_page), the boundary above
        -- through the index alone.
        PERFORM set_config('enable_indexscan', 'off', true);
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE s.m) FROM ('
                       'SELECT coalesce((%s), false) AND (%s) AS m '
                       'FROM %s WHERE %s OFFSET 0) s', p_predicate, p_mask, p_reg.target, v_range)
           INTO v_rows, v_matches;
        PERFORM set_config('enable_indexscan', v_indexscan, true);
        v_scope_rows := v_scope_rows + v_rows;
        v_total := v_total + v_matches;
        IF cardinality(v_sample) < 10 AND v_matches > 0 THEN
            EXECUTE format('SELECT ARRAY(SELECT pgjobs._canonical_text(t.%1$I) FROM %2$s t '
                           'WHERE %3$s AND coalesce((%4$s), false) AND (%5$s) '
                           'ORDER BY t.%1$I LIMIT %6$s)',
                           p_reg.key_column, p_reg.target, v_range, p_predicate, p_mask,
                           10 - cardinality(v_sample))
               INTO v_more;
            v_sample := v_sample || v_more;
        END IF;
        EXIT WHEN v_upper IS NULL;
        v_after := v_upper;
        IF clock_timestamp() >= v_deadline THEN
            v_exact := false;
            EXIT;
        END IF;
        v_chunk := least(v_chunk * 10, 100000);
    END LOOP;
    v_counted := v_scope_rows;

    IF NOT v_exact THEN
        -- The keys after v_after, estimated from a sample of the table's
        -- blocks (all of them when the table has fewer than 2000).
        -- (pg_partition_tree lists a partitioned table's tree, nothing for a
        -- plain table.)
        SELECT greatest(coalesce(sum(pg_relation_size(p.relid)), pg_relation_size(p_reg.target))
                        / current_setting('block_size')::numeric, 1)
          INTO v_blocks
          FROM pg_partition_tree(p_reg.target) p;
        v_pct := least(100, 100.0 * 2000 / v_blocks);
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE s.m) FROM ('
                       'SELECT coalesce((%s), false) AND (%s) AS m '
                       'FROM %s TABLESAMPLE SYSTEM (%s) WHERE %I = %s AND %I > %L::%s OFFSET 0) s',
                       p_predicate, p_mask, p_reg.target, v_pct, p_reg.scope_column, v_scope,
                       p_reg.key_column, v_after, v_key_type)
           INTO v_rows, v_matches;
        v_scope_rows := v_scope_rows + round(v_rows * 100.0 / v_pct)::bigint;
        v_total := v_total + round(v_matches * 100.0 / v_pct)::bigint;
    END IF;
    PERFORM set_config('jit', v_jit, true);
    PERFORM set_config('enable_indexscan', v_indexscan, true);
    RETURN jsonb_build_object(
        'matches', v_total,
        'exact', v_exact,
        'scope_rows', v_scope_rows,
        'sample', to_jsonb(v_sample),
        'counted_rows', v_counted,
        'elapsed_ms', round(extract(epoch FROM clock_timestamp() - v_t0) * 1000));
END
$$;
