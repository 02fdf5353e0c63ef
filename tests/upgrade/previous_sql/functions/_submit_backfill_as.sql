CREATE OR REPLACE FUNCTION pgjobs._submit_backfill_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_set jsonb,
    p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.submit_backfill, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.submit_backfill, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Submits a backfill: for the rows of scope p_scope matching p_filter and
-- created at or before now (the cutoff), sets what p_set says (columns get
-- the value cast to their type; document fields are merged in). Options:
-- the common ones, page_size, page_ms, and (admins only) handler: a
-- function (regclass, text[]) RETURNS bigint called with each page's keys
-- instead of p_set, returning the rows it changed; allow_unknown_fields
-- (pgjobs._require_known_fields: the filter's document fields must exist in
-- the scope unless it is true; set's are created, except a key that looks
-- like a slip: a column in another case, or the document column's name as
-- a path prefix, must exist in some row); replace_non_objects (boolean,
-- default false: a row whose document holds a string, number, boolean or
-- array where set merges fields in is refused here, and skipped by the
-- pages, pgjobs._set_guard; true replaces such values with objects).
-- Everything is validated
-- before anything is written (22023; 42501 for a non-admin handler).
-- SECURITY DEFINER for pgjobs_client: the caller needs UPDATE on the target.
-- Returns the job id.
DECLARE
    v_reg pgjobs.target_registry;
    v_selection record;
    v_assignments text;
    v_handler regprocedure;
    v_unchecked text[];
    v_set_unchecked text[];
    v_slips text[];
    v_job pgjobs.jobs;
    v_blocked record;
    v_replace boolean;
BEGIN
    p_caller := pgjobs._enter('submit_backfill', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- The target looked up and checked once, and handed down (as in
    -- pgjobs._submit_delete_as).
    v_reg := pgjobs._target(p_target);
    -- The columns the job is compiled against, which it records
    -- (pgjobs._insert_job_row compares them).
    PERFORM pgjobs._compiling_against(p_target);
    PERFORM pgjobs._require(p_target, 'UPDATE');
    -- The job reads the rows it selects (scope, cutoff, filter), as a
    -- UPDATE ... WHERE would: without SELECT the role could not run it
    -- itself, and the job's count would be an oracle on unreadable data.
    PERFORM pgjobs._require(p_target, 'SELECT');
    PERFORM pgjobs._page_options(p_options);
    v_replace := coalesce(pgjobs._option_bool('replace_non_objects',
                              CASE WHEN jsonb_typeof(p_options) = 'object'
                                   THEN p_options -> 'replace_non_objects' END), false);
    IF p_filter IS NULL THEN
        RAISE EXCEPTION 'filter must not be null' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' to backfill every row of the scope.';
    END IF;
    SELECT s.* INTO v_selection
      FROM pgjobs._row_selection(v_reg, p_scope, p_filter, '{}', now()) s;
    -- The typo guard on the filter (set: below, for its likely slips only)
    -- and its twin for values (a $ne / $nin whose operand's JSON type no
    -- row holds at the path excludes no row); on a scope without rows yet,
    -- judged at the job's first attempt (pgjobs._judge_filter).
    v_unchecked := pgjobs._judge_filter(v_reg, pgjobs._canonical_scope(v_reg, p_scope),
        p_filter, v_selection.paths, p_options);
    IF jsonb_typeof(p_options) = 'object' AND p_options ? 'handler' THEN
        v_handler := pgjobs._handler(p_options -> 'handler');
        IF p_set IS NOT NULL AND p_set <> '{}' THEN
            RAISE EXCEPTION 'pass either set or the handler option, not both'
                USING ERRCODE = '22023', HINT = 'A handler computes the new values itself.';
        END IF;
    ELSE
        v_assignments := pgjobs._compile_set(v_reg, p_set);
        -- set creates fields, so it is not typo-checked as a whole; but a
        -- key that is a column in another case ("Label") or starts with the
        -- document column ("data.status") is a slip far more often than a
        -- new field, and would write the wrong place in every row of the
        -- scope: such a key must be a path some row has already (or the
        -- job says allow_unknown_fields). The slip test: pgjobs._field_slip;
        -- and a document field of the scope's rows in another case or in
        -- look-alike characters ("Status" where the rows say "status"),
        -- pgjobs._field_twin, which reads them.
        v_slips := ARRAY(SELECT k.key FROM jsonb_object_keys(p_set) AS k(key),
                                pgjobs._field_slip(v_reg, k.key) s
                          WHERE s.column_name IS NOT NULL OR s.relative_path IS NOT NULL
                             OR (NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                              WHERE a.attrelid = v_reg.target AND a.attnum > 0
                                                AND NOT a.attisdropped AND a.attname = k.key)
                                 AND pgjobs._field_twin(v_reg,
                                         pgjobs._canonical_scope(v_reg, p_scope), k.key, NULL)
                                     IS NOT NULL)
                          ORDER BY k.key);
        -- NULL stays NULL (judged): an empty list would defer the job.
        v_set_unchecked := pgjobs._judge_fields(v_reg, pgjobs._canonical_scope(v_reg, p_scope),
                                                v_slips, p_options, 'set');
        IF v_set_unchecked IS NOT NULL THEN
            v_unchecked := coalesce(v_unchecked, '{}') || v_set_unchecked;
        END IF;
        -- A field merged into a value that is no object (a string, number,
        -- boolean or array) would replace that value, which set does not
        -- name: rows of the row set holding one are refused now (the
        -- pages skip and count those they meet later: pgjobs._set_guard).
        IF NOT v_replace THEN
            SELECT b.* INTO v_blocked
              FROM pgjobs._set_blocked_rows(v_reg, pgjobs._canonical_scope(v_reg, p_scope),
                                            v_selection.predicate, p_set) b;
            IF v_blocked.rows > 0 THEN
                RAISE EXCEPTION 'set merges fields into %, which % of the rows it selects in '
                                'scope % hold as no object (the first, key %, holds % %; % rows '
                                'of the scope read)',
                    CASE WHEN v_blocked.path = '' THEN 'the document itself'
                         ELSE format('"%s"', v_blocked.path) END,
                    v_blocked.rows, pgjobs._canonical_scope(v_reg, p_scope), v_blocked.key,
                    CASE WHEN v_blocked.json_type = 'array' THEN 'an' ELSE 'a' END,
                    v_blocked.json_type, v_blocked.rows_read
                    USING ERRCODE = '22023',
                    HINT = format('set never replaces a value to make room for a field inside '
                                  'it (a path never indexes into an array). Leave those rows '
                                  'out with the filter, set %s to null on them first, or pass '
                                  '{"replace_non_objects": true} to replace such values with '
                                  'objects. Rows like these that the job meets later are left '
                                  'unchanged and counted in its result (skipped).',
                                  CASE WHEN v_blocked.path = '' THEN 'the document'
                                       ELSE format('"%s"', v_blocked.path) END);
            END IF;
        END IF;
    END IF;
    v_job := pgjobs._insert_job('backfill', p_target, p_scope,
        jsonb_build_object('filter', p_filter, 'set', coalesce(p_set, '{}'),
                           'handler', v_handler::text)
        -- An empty list is a deferral too: a json column's value check
        -- (pgjobs._judge_filter).
        || CASE WHEN v_unchecked IS NOT NULL
                THEN jsonb_build_object('unchecked_fields', to_jsonb(v_unchecked))
                ELSE '{}'::jsonb END,
        p_options, ARRAY['page_size', 'page_ms', 'handler', 'allow_unknown_fields',
                       'replace_non_objects'],
        v_selection.predicate, v_assignments, v_reg);
    RETURN pgjobs._leave(v_job.id);
END
$$;
