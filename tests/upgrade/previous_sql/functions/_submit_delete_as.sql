CREATE OR REPLACE FUNCTION pgjobs._submit_delete_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_exclude text[],
    p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.submit_delete, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.submit_delete, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Submits a delete of the rows of scope p_scope of p_target that match
-- p_filter, were created at or before now (the cutoff) and whose key is not
-- in p_exclude. From this moment the read path (pgjobs.mask, visible,
-- visible_count) hides exactly those rows. Options: the common ones, plus
-- page_size (rows per page; default adaptive), page_ms (target page
-- time, default 50) and strategy (how pages find their rows: 'auto'
-- default, 'range' or 'collect'; see pgjobs._page_strategy) and
-- allow_unknown_fields (a filter naming a document field no row of the
-- scope has is refused otherwise: pgjobs._require_known_fields) and
-- allow_unknown_keys (an excluded key that names no row of the scope is
-- refused otherwise: pgjobs._require_known_keys). Everything
-- is validated before anything is written (the exclude keys just after the
-- job's row, in the same transaction: a refusal leaves nothing)
-- (22023). SECURITY DEFINER for pgjobs_client: the caller needs DELETE on
-- the target (42501). A client whose exclude list kept in
-- pgjobs.job_exclusions would pass max_item_bytes_per_client raises 55006
-- (pgjobs._keep_client_bytes). Returns the job id.
DECLARE
    v_reg pgjobs.target_registry;
    v_selection record;
    v_unchecked text[];
    v_job pgjobs.jobs;
    v_exclude_bytes bigint;
BEGIN
    p_caller := pgjobs._enter('submit_delete', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- The target's registration and trust, checked once here and handed to
    -- every step below (each used to look it up and check it again: four
    -- full checks per submit, 40-120 ms under load).
    v_reg := pgjobs._target(p_target);
    -- The columns the job is compiled against, which it records
    -- (pgjobs._insert_job_row compares them).
    PERFORM pgjobs._compiling_against(p_target);
    PERFORM pgjobs._require(p_target, 'DELETE');
    -- The job reads the rows it selects (scope, cutoff, filter), as a
    -- DELETE ... WHERE would: without SELECT the role could not run it
    -- itself, and the job's count would be an oracle on unreadable data.
    PERFORM pgjobs._require(p_target, 'SELECT');
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
    SELECT s.* INTO v_selection
      FROM pgjobs._row_selection(v_reg, p_scope, p_filter, p_exclude, now()) s;
    -- The typo guard (every document path of the filter is in some row)
    -- and its twin for values (a $ne / $nin whose operand's JSON type no
    -- row holds at the path excludes no row); on a scope without rows yet,
    -- judged at the job's first attempt (pgjobs._judge_filter).
    v_unchecked := pgjobs._judge_filter(v_reg, pgjobs._canonical_scope(v_reg, p_scope),
        p_filter, v_selection.paths, p_options);
    v_job := pgjobs._insert_job('delete', p_target, p_scope,
        jsonb_build_object('filter', p_filter)
        -- The list, or when it goes to pgjobs.job_exclusions (more than 100
        -- keys) its length: 100,000 keys of 36 characters would not fit
        -- the payload's 1 MiB.
        || CASE WHEN v_selection.survivors ->> 'exclusions' = 'table'
                THEN jsonb_build_object('exclude_count', cardinality(p_exclude))
                ELSE jsonb_build_object('exclude', to_jsonb(p_exclude)) END
        -- An empty list is a deferral too: a json column's value check
        -- (pgjobs._judge_filter).
        || CASE WHEN v_unchecked IS NOT NULL
                THEN jsonb_build_object('unchecked_fields', to_jsonb(v_unchecked))
                ELSE '{}'::jsonb END,
        p_options, ARRAY['page_size', 'page_ms', 'strategy', 'allow_unknown_fields',
                          'allow_unknown_keys'],
        v_selection.predicate, NULL, v_reg);
    -- The exclude list's twin of the typo guard: a key that names no row of
    -- the scope keeps nothing (a typo, a key of another scope), so the row
    -- meant to be kept went with the rest. Refused, unless
    -- allow_unknown_keys (pgjobs._require_known_keys); the job row just
    -- inserted goes with the refusal. Asked after the insert's checks (the
    -- options, the engine's grants: pgjobs._insert_job_row), so a submit the
    -- engine cannot run is refused for that first, whatever its keys.
    PERFORM pgjobs._require_known_keys(v_reg, pgjobs._canonical_scope(v_reg, p_scope),
                                       p_exclude, p_options);
    -- A long exclude list is stored once, in pgjobs.job_exclusions, and the
    -- predicate probes it there (pgjobs._exclusion_clause): pages and reads
    -- plan the same short text whatever the list's length.
    -- Its bytes are the job's item_bytes, held for a client to
    -- max_item_bytes_per_client over all its jobs with its fan-out items
    -- (pgjobs._keep_client_bytes): up to
    -- 100,000 keys of any length a job, times the jobs a client may keep,
    -- was TBs of job_exclusions. The job row is this call's own.
    IF v_selection.survivors ->> 'exclusions' = 'table' THEN
        v_exclude_bytes := (SELECT coalesce(sum(octet_length(k)), 0)
                              FROM (SELECT DISTINCT k FROM unnest(v_selection.keys) k) d);
        PERFORM pgjobs._keep_client_bytes(
            v_job.id, v_exclude_bytes, 'an exclude list',
            'Exclude rows with a filter instead, e.g. {"$not": {...}}', true);
        INSERT INTO pgjobs.job_exclusions (job_id, key)
        SELECT DISTINCT v_job.id, k FROM unnest(v_selection.keys) k;
        UPDATE pgjobs.jobs j SET item_bytes = v_exclude_bytes WHERE j.id = v_job.id;
        v_selection.predicate := v_selection.head || format(' AND NOT (%s)',
            pgjobs._exclusion_clause(v_reg.key_column, v_selection.survivors ->> 'key_type',
                                     NULL, v_job.id));
    END IF;
    -- What the delete can leave of its scope, as data: the read path's
    -- short cut past it (pgjobs._mask_candidates) is built from this, not
    -- parsed back out of the predicate's text.
    -- The row's inputs in their final form (the predicate, the survivors
    -- with a short list's keys), which pgjobs._insert_job_row left out of
    -- its count: the difference, none for a common delete (no lock).
    UPDATE pgjobs.jobs j SET survivors = v_selection.survivors, predicate = v_selection.predicate
     WHERE j.id = v_job.id
    RETURNING pgjobs._job_input_bytes(j) - coalesce(v_job.kept_bytes, 0) INTO v_exclude_bytes;
    IF v_exclude_bytes <> 0 THEN
        PERFORM pgjobs._keep_client_bytes(
            v_job.id, v_exclude_bytes, 'payload',
            'Keep large inputs in a table or object storage and pass a reference in the '
            'payload; exclude rows with a filter instead, e.g. {"$not": {...}}', true);
    END IF;
    RETURN pgjobs._leave(v_job.id);
END
$$;
