CREATE OR REPLACE FUNCTION pgjobs.submit_backfill(
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_set jsonb,
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Submits a backfill: for the rows of scope p_scope matching p_filter and
-- created at or before now (the cutoff), sets what p_set says (columns get
-- the value cast to their type; document fields are merged in). Options:
-- the common ones, page_size, page_ms, and (admins only) handler: a
-- function (regclass, text[]) RETURNS bigint called with each page's keys
-- instead of p_set, returning the rows it changed. Everything is validated
-- before anything is written (22023; 42501 for a non-admin handler).
-- SECURITY DEFINER for pgjobs_client: the caller needs UPDATE on the target.
-- Returns the job id.
DECLARE
    v_reg pgjobs.target_registry := pgjobs._target(p_target);
    v_predicate text;
    v_assignments text;
    v_handler regprocedure;
    v_job pgjobs.jobs;
BEGIN
    PERFORM pgjobs._require(p_target, 'UPDATE');
    PERFORM pgjobs._page_options(p_options);
    IF p_filter IS NULL THEN
        RAISE EXCEPTION 'filter must not be null' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' to backfill every row of the scope.';
    END IF;
    v_predicate := pgjobs._row_predicate(v_reg, p_scope, p_filter, '{}', now());
    IF jsonb_typeof(p_options) = 'object' AND p_options ? 'handler' THEN
        v_handler := pgjobs._handler(p_options -> 'handler');
        IF p_set IS NOT NULL AND p_set <> '{}' THEN
            RAISE EXCEPTION 'pass either set or the handler option, not both'
                USING ERRCODE = '22023', HINT = 'A handler computes the new values itself.';
        END IF;
    ELSE
        v_assignments := pgjobs._compile_set(v_reg, p_set);
    END IF;
    v_job := pgjobs._insert_job('backfill', p_target, p_scope,
        jsonb_build_object('filter', p_filter, 'set', coalesce(p_set, '{}'),
                           'handler', v_handler::text),
        p_options, ARRAY['page_size', 'page_ms', 'handler'], v_predicate, v_assignments);
    RETURN v_job.id;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_backfill(regclass, text, jsonb, jsonb, jsonb) IS
'Submits a backfill of the rows of the scope matching the filter and created at or before now: '
'p_set maps columns (value cast to the column type) and document fields (merged in) to JSON '
'values. Options: priority, max_attempts, run_at, on_conflict, lease, page_size, page_ms, and '
'for admins handler (a function (regclass, text[]) RETURNS bigint run on each page''s keys). '
'Returns the job id.';
