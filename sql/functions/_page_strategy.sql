CREATE OR REPLACE FUNCTION pgjobs._page_strategy(p_job pgjobs.jobs, p_reg pgjobs.target_registry)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- How a job's pages find their rows, decided once at its first call:
-- 'range' (pages are key ranges of the scope; every row of the range is
-- read and the predicate evaluated) or 'collect' (the matching rows are
-- found once through an index and pages delete them by address: see
-- pgjobs._collect_matches). Option `strategy` ('auto' default, 'range',
-- 'collect') decides for delete jobs; backfills always walk ranges.
--
-- A range job reads every row of the scope once and tests the filter on
-- each. A collect job reads the matching rows three times (collect,
-- delete, sweep) and looks them up in the index twice: cheaper when few
-- rows match, even with a match on every heap page of the scope, as long
-- as those pages stay cached between the passes (shared buffers or the OS
-- page cache: a re-read from the OS costs a copy, not a disk read). On
-- bench/delete.py (2M rows, a 500k-row scope, shared_buffers 128MB), 20% of
-- the scope with a match on every page: collect 580 ms of server CPU,
-- range 1030-1070 ms (a bulk DELETE 320-440 ms) on the interleaved layout;
-- 371 against 718 ms on the contiguous one. (The bound used to be a
-- quarter of shared_buffers: 20% on every page of a 500k-row scope then
-- walked ranges at 2.3-3x a bulk DELETE; issue 11.) So 'auto' collects
-- when
--   1. an index narrows the predicate: the planner, restricted to bitmap
--      scans as the collection is, hands the heap at most 60% of the
--      scope's rows (e.g. through the btree_gin (scope, document
--      jsonb_path_ops) index for document equality); and, measured on a
--      sample of about 300 heap pages (3-10 ms; if that holds fewer than 30
--      of the scope's pages, once more, as many pages as should hold 45 of
--      them, at most 10,000; still too few: 'range'):
--   2. at most 30% of the scope's rows match; and
--   3. the matching rows sit on at most 60% of the scope's pages, or their
--      pages would fill at most a quarter of effective_cache_size (the
--      memory the planner counts on to cache the relation: shared_buffers
--      and the OS page cache); and
--   4. at most 5 million rows match: the collection holds their addresses
--      in memory while it batches them (~30 bytes a row).
-- A job without a filter walks ranges at once. Locks nothing.
DECLARE
    v_strategy text := coalesce(p_job.options ->> 'strategy', 'auto');
    v_seqscan text := current_setting('enable_seqscan');
    v_indexscan text := current_setting('enable_indexscan');
    v_bitmapscan text := current_setting('enable_bitmapscan');
    v_scope text;
    v_plan json;
    v_node jsonb;
    v_scope_rows double precision;
    v_candidates double precision;
    v_pct numeric;
    v_scope_pages bigint;
    v_rel_pages bigint;
    v_match_pages bigint;
    v_scope_rows_sampled bigint;
    v_matches double precision;
BEGIN
    IF p_job.kind <> 'delete' THEN
        RETURN 'range';
    ELSIF v_strategy <> 'auto' THEN
        RETURN v_strategy;
    ELSIF coalesce(p_job.payload -> 'filter', '{}'::jsonb) = '{}'::jsonb THEN
        RETURN 'range';
    END IF;

    v_scope := pgjobs._scope_literal(p_reg, p_job.scope);
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM set_config('enable_indexscan', 'off', true);
    PERFORM set_config('enable_bitmapscan', 'on', true);
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT t.ctid FROM %s t WHERE t.%I = %s',
                   p_job.target, p_reg.scope_column, v_scope)
       INTO v_plan;
    v_scope_rows := (v_plan::jsonb -> 0 -> 'Plan' ->> 'Plan Rows')::double precision;
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT t.ctid FROM %s t WHERE %s',
                   p_job.target, p_job.predicate)
       INTO v_plan;
    PERFORM set_config('enable_seqscan', v_seqscan, true);
    PERFORM set_config('enable_indexscan', v_indexscan, true);
    PERFORM set_config('enable_bitmapscan', v_bitmapscan, true);
    -- The rows the index part of the plan hands to the heap: the child of
    -- the bitmap heap scan (one index, or a BitmapAnd / BitmapOr of them).
    v_node := jsonb_path_query_first(v_plan::jsonb,
                                     'strict $.**?(@."Node Type" == "Bitmap Heap Scan")');
    -- (Its outer child: the predicate's sub-selects hang there too, as InitPlans.)
    v_candidates := (jsonb_path_query_first(v_node,
        'strict $.Plans[*] ? (@."Parent Relationship" == "Outer")') ->> 'Plan Rows')
        ::double precision;
    IF v_candidates IS NULL OR v_candidates > 0.6 * v_scope_rows THEN
        RETURN 'range';
    END IF;

    -- The sample was 1000 pages: 50-120 ms of random reads on a busy
    -- machine, a third of a 50k-row bulk DELETE, for thresholds that 30
    -- pages of the scope decide as well (issue 11: the fixed cost of a
    -- filtered job's first call).
    v_rel_pages := greatest(pgjobs._relation_pages(p_job.target), 1);
    v_pct := least(100, 100.0 * 300 / v_rel_pages);
    FOR v_attempt IN 1..2 LOOP
        EXECUTE format(
            'SELECT count(*), count(*) FILTER (WHERE p.matches > 0), coalesce(sum(p.rows), 0), '
            '       coalesce(sum(p.matches), 0) '
            '  FROM (SELECT count(*) AS rows, '
            '               count(*) FILTER (WHERE coalesce((%1$s), false)) AS matches '
            '          FROM %2$s t TABLESAMPLE SYSTEM (%3$s) WHERE t.%4$I = %5$s '
            '         GROUP BY t.tableoid, (t.ctid::text::point)[0]) p',
            p_job.predicate, p_job.target, v_pct, p_reg.scope_column, v_scope)
           INTO v_scope_pages, v_match_pages, v_scope_rows_sampled, v_matches;
        EXIT WHEN v_scope_pages >= 30 OR v_pct >= 100;
        v_pct := least(100, 100.0 * 10000 / v_rel_pages,
                       v_pct * greatest(3.0, 45.0 / greatest(v_scope_pages, 1)));
    END LOOP;
    RETURN CASE WHEN v_scope_pages >= 30
                     AND v_matches <= 0.3 * v_scope_rows_sampled
                     AND (v_match_pages <= 0.6 * v_scope_pages
                          OR v_match_pages * 100 / v_pct * current_setting('block_size')::bigint
                             <= pg_size_bytes(current_setting('effective_cache_size')) / 4)
                     AND v_matches * 100 / v_pct <= 5000000
                THEN 'collect' ELSE 'range' END;
END
$$;
