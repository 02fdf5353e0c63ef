CREATE OR REPLACE FUNCTION pgjobs.submit_delete(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}',
    p_exclude text[] DEFAULT '{}',
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- Submits a delete of the rows of scope p_scope of p_target that match
-- p_filter, were created at or before now (the cutoff) and whose key is not
-- in p_exclude. From this moment the read path (pgjobs.mask, visible,
-- visible_count) hides exactly those rows. Options: the common ones, plus
-- page_size (rows per page; default adaptive), page_ms (target page
-- time, default 50) and strategy (how pages find their rows: 'auto'
-- default, 'range' or 'collect'; see pgjobs._page_strategy). Everything is
-- validated before anything is written
-- (22023). SECURITY DEFINER for pgjobs_client: the caller needs DELETE on
-- the target (42501). Returns the job id.
DECLARE
    v_reg pgjobs.target_registry := pgjobs._target(p_target);
    v_predicate text;
    v_job pgjobs.jobs;
BEGIN
    PERFORM pgjobs._require(p_target, 'DELETE');
    PERFORM pgjobs._page_options(p_options);
    IF p_options ? 'strategy'
       AND NOT coalesce(p_options ->> 'strategy' = ANY (ARRAY['auto', 'range', 'collect']),
                        false) THEN
        RAISE EXCEPTION 'option "strategy" must be "auto", "range" or "collect", not %',
            p_options -> 'strategy'
            USING ERRCODE = '22023',
            HINT = 'Leave it out (auto): pgjobs collects the matching rows first when an index '
                   'narrows the filter, and walks key ranges otherwise.';
    END IF;
    v_predicate := pgjobs._row_predicate(v_reg, p_scope, p_filter, p_exclude, now());
    v_job := pgjobs._insert_job('delete', p_target, p_scope,
        jsonb_build_object('filter', coalesce(p_filter, '{}'),
                           'exclude', to_jsonb(coalesce(p_exclude, '{}'))),
        p_options, ARRAY['page_size', 'page_ms', 'strategy'], v_predicate);
    RETURN v_job.id;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_delete(regclass, text, jsonb, text[], jsonb) IS
'Submits a delete of the rows of the scope matching the filter, created at or before now, '
'whose key is not in p_exclude; the read mask hides them at once. Options: priority, '
'max_attempts, run_at, on_conflict (queue | reject), lease, page_size, page_ms, strategy '
'(auto | range | collect). Returns the job id.';
