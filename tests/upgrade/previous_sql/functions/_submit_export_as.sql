CREATE OR REPLACE FUNCTION pgjobs._submit_export_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.submit_export, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.submit_export, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Submits an export of the rows of scope p_scope of p_target that match
-- p_filter and were created at or before now (the cutoff), in key order,
-- to object storage. Rows masked by a pending delete are left out when each
-- chunk is read (pgjobs.export_chunk_sql). A worker (`pgjobs worker`, or
-- `pgjobs export` in-process) streams it; exports never wait for the
-- writer gate.
--
-- Export options (besides the common ones):
--   format       "csv" (default, with a header) | "jsonl" | "parquet" (typed
--                columns, pgjobs._parquet_column; one file per part_size of
--                output under a prefix listed in result.uris)
--   compression  parquet only: "zstd" (default) | "snappy" | "none"
--   row_group_bytes  parquet only: Arrow bytes per row group (the worker's
--                memory), 1048576..268435456, default 16777216
--   columns      array of column names and/or document field paths (a.b.c);
--                default every column of the table, in table order
--   gzip         boolean, default false
--   destination  URI prefix (file:///abs, s3://, gs://, az://, memory://)
--                under a prefix of the storage allow-list (pgjobs.allow_storage;
--                else 42501); default the worker's own storage
--   chunk_rows   keys per keyset chunk (one short transaction each), 1..1000000,
--                default 50000
--   part_size    bytes of output per uploaded part (the checkpoint grain),
--                1024..1073741824, default 8388608
--   parallel     integer 1..64, default 1, at most pgjobs._max_parallel()
--                (an administrator's ceiling, set_defaults' max_parallel; else
--                22023): the scope's key range is split
--                into up to that many parts (pgjobs.export_parts) that as many
--                workers export side by side, each resumable; CSV and JSONL
--                parts are joined, in key order, into the one object a
--                parallel: 1 export writes; Parquet parts stay files of their
--                own under the export's folder (result.uris, in key order)
--   allow_unknown_fields  boolean, default false: else a document field of
--                the filter or of columns that no row of the scope has is
--                refused (pgjobs._require_known_fields)
-- Everything is validated before anything is written (22023). The payload
-- keeps the filter and the resolved output; the predicate column keeps the
-- compiled row set (scope, cutoff, filter). Returns the job id.
-- SECURITY DEFINER for pgjobs_client: the caller needs SELECT on the target
-- (42501). Locks nothing beyond the inserted row.
DECLARE
    v_reg pgjobs.target_registry;
    v_options jsonb := p_options;  -- NULL is refused below, as every submit does
    v_format text := 'csv';
    v_gzip boolean := false;
    v_parallel integer := 1;
    v_destination text;
    v_columns jsonb;
    v_column jsonb;
    v_name text;
    v_seg text;
    v_seen text[] := '{}'::text[];
    v_fields text[] := '{}'::text[];
    v_predicate text;
    v_scope text;
    v_unchecked text[];
    v_job pgjobs.jobs;
    -- The options of an export beyond those every job takes.
    v_keys constant text[] := ARRAY['format', 'columns', 'gzip', 'destination', 'chunk_rows',
                                    'part_size', 'parallel', 'allow_unknown_fields',
                                    'compression', 'row_group_bytes'];
BEGIN
    p_caller := pgjobs._enter('submit_export', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_reg := pgjobs._target(p_target);
    -- The columns the job is compiled against, which it records
    -- (pgjobs._insert_job_row compares them).
    PERFORM pgjobs._compiling_against(p_target);
    PERFORM pgjobs._require(p_target, 'SELECT');
    IF jsonb_typeof(v_options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for the defaults.';
    END IF;

    IF v_options ? 'parallel' THEN
        v_parallel := pgjobs._option_int('parallel', v_options -> 'parallel', 1, 64);
        -- The administrator's ceiling (pgjobs.set_defaults), for every submitter:
        -- each part is one more reader of the database and one more worker slot.
        IF v_parallel > pgjobs._max_parallel() THEN
            RAISE EXCEPTION 'option "parallel" is %, above the ceiling of % an administrator set',
                            v_parallel, pgjobs._max_parallel()
                USING ERRCODE = '22023',
                HINT = format('Ask for {"parallel": %s} or fewer; an administrator raises the '
                              'ceiling with pgjobs.set_defaults(''{"max_parallel": N}'').',
                              pgjobs._max_parallel());
        END IF;
    END IF;

    IF v_options ? 'format' THEN
        IF v_options -> 'format' NOT IN ('"csv"'::jsonb, '"jsonl"'::jsonb, '"parquet"'::jsonb)
        THEN
            RAISE EXCEPTION 'option "format" must be "csv", "jsonl" or "parquet", not %',
                            v_options -> 'format'
                USING ERRCODE = '22023',
                HINT = '"csv" writes a header and one column per requested column; "jsonl" '
                       'one JSON object per line; "parquet" typed columns (the worker needs '
                       'pip install ''pgjobs-engine[parquet]'').';
        END IF;
        v_format := v_options ->> 'format';
    END IF;
    -- Parquet's own options; its files are compressed by column, never gzipped.
    IF v_format = 'parquet' THEN
        IF v_options ? 'compression' AND v_options -> 'compression' NOT IN
               ('"zstd"'::jsonb, '"snappy"'::jsonb, '"none"'::jsonb) THEN
            RAISE EXCEPTION 'option "compression" must be "zstd", "snappy" or "none", not %',
                            v_options -> 'compression'
                USING ERRCODE = '22023',
                HINT = '"zstd" (the default) gives the smallest files; "snappy" is what older '
                       'readers expect.';
        END IF;
        IF v_options ? 'row_group_bytes' THEN
            PERFORM pgjobs._option_int('row_group_bytes', v_options -> 'row_group_bytes',
                                       1048576, 268435456);
        END IF;
        IF v_options -> 'gzip' = 'true'::jsonb THEN
            RAISE EXCEPTION 'option "gzip" does not apply to format "parquet"'
                USING ERRCODE = '22023',
                HINT = 'Parquet compresses each column: use {"compression": "zstd"} or "snappy".';
        END IF;
    ELSIF v_options ? 'compression' OR v_options ? 'row_group_bytes' THEN
        RAISE EXCEPTION 'options "compression" and "row_group_bytes" apply to format "parquet" '
                        'only'
            USING ERRCODE = '22023',
            HINT = 'For a compressed CSV or JSONL export use {"gzip": true}.';
    END IF;

    IF v_options ? 'gzip' THEN
        v_gzip := pgjobs._option_bool('gzip', v_options -> 'gzip');
    END IF;

    -- A JSON null is refused, as for every other option: an unset value is
    -- no choice of place (it wrote to the worker's storage), nor of
    -- columns below (it exported every column).
    IF v_options ? 'destination' THEN
        v_destination := v_options ->> 'destination';
        IF jsonb_typeof(v_options -> 'destination') <> 'string'
           OR v_destination !~* '^(file://.+|memory://.*|(s3|gs|az)://[^/]+(/.*)?)$' THEN
            RAISE EXCEPTION 'option "destination" must be a URI prefix with scheme file, s3, gs, '
                            'az or memory, not %', v_options -> 'destination'
                USING ERRCODE = '22023',
                -- Only examples a destination may be: file://./dir (the
                -- command line's --storage) is refused below, as relative.
                HINT = 'For example "s3://bucket/exports/" or "file:///var/exports/"; leave '
                       '"destination" out to use the worker''s own storage.';
        END IF;
        -- Clients choose where the worker writes only within what an
        -- administrator allowed (docs/exports.md, "Where exports may go"); the
        -- normal form is what is stored, checked and used by the worker.
        v_destination := pgjobs._normalize_uri(v_destination, '42501');
    END IF;

    IF v_options ? 'chunk_rows' THEN
        PERFORM pgjobs._option_int('chunk_rows', v_options -> 'chunk_rows', 1, 1000000);
    END IF;
    IF v_options ? 'part_size' THEN
        PERFORM pgjobs._option_int('part_size', v_options -> 'part_size', 1024, 1073741824);
    END IF;

    -- The output columns, resolved now (document_fields lists the entries
    -- that are document paths): a column added, renamed or dropped later does
    -- not silently turn into a document field; the export fails instead.
    IF v_options ? 'columns' THEN
        IF jsonb_typeof(v_options -> 'columns') <> 'array'
           OR jsonb_array_length(v_options -> 'columns') = 0
           OR jsonb_array_length(v_options -> 'columns') > 1000 THEN
            RAISE EXCEPTION 'option "columns" must be an array of 1 to 1000 names, not %',
                            left((v_options -> 'columns')::text, 200)
                USING ERRCODE = '22023',
                HINT = 'List columns and/or document fields, e.g. ["id", "data.name"]; leave '
                       '"columns" out to export every column.';
        END IF;
        FOR v_column IN SELECT c.value FROM jsonb_array_elements(v_options -> 'columns') c LOOP
            IF jsonb_typeof(v_column) <> 'string' OR v_column #>> '{}' = '' THEN
                RAISE EXCEPTION 'option "columns" holds %: each entry must be a non-empty string',
                                v_column
                    USING ERRCODE = '22023',
                    HINT = 'List columns and/or document fields, e.g. ["id", "data.name"].';
            END IF;
            v_name := v_column #>> '{}';
            IF v_name = ANY (v_seen) THEN
                RAISE EXCEPTION 'option "columns" lists "%" twice', v_name
                    USING ERRCODE = '22023', HINT = 'List each column once.';
            END IF;
            v_seen := v_seen || v_name;
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = p_target AND a.attname = v_name
                   AND a.attnum > 0 AND NOT a.attisdropped);
            IF v_reg.document_column IS NULL THEN
                RAISE EXCEPTION 'unknown column "%": % has no such column and no document column',
                                v_name, p_target
                    USING ERRCODE = '22023',
                    HINT = format('Columns: %s.', (
                        SELECT string_agg(a.attname, ', ' ORDER BY a.attnum)
                          FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped));
            END IF;
            v_fields := v_fields || v_name;
            -- As pgjobs.export_chunk_sql refuses it: the output would name it
            -- by an alias PostgreSQL cuts to 63 bytes.
            IF v_format IN ('csv', 'jsonl') AND octet_length(v_name) > 63 THEN
                RAISE EXCEPTION 'document field "%..." of option "columns" is longer than 63 '
                                'bytes: the % output would name it cut short',
                                left(v_name, 63), v_format
                    USING ERRCODE = '22023',
                    HINT = 'Export the whole document column instead (list it in "columns"), '
                           'or use format parquet, whose columns keep any name.';
            END IF;
            FOREACH v_seg IN ARRAY string_to_array(v_name, '.') LOOP
                IF v_seg = '' OR left(v_seg, 1) = '$' THEN
                    RAISE EXCEPTION 'column "%" is neither a column nor a document field path',
                                    v_name
                        USING ERRCODE = '22023',
                        HINT = 'Document fields are written a.b.c: no empty parts, no leading $.';
                END IF;
            END LOOP;
        END LOOP;
        v_columns := v_options -> 'columns';
    ELSE
        SELECT jsonb_agg(a.attname ORDER BY a.attnum) INTO v_columns
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped;
    END IF;

    -- The cutoff is this transaction's now(), which is also what
    -- pgjobs.jobs.cutoff defaults to for the row inserted below.
    v_predicate := pgjobs._row_predicate(v_reg, p_scope, p_filter, '{}', now());
    -- The typo guard: the filter's document fields (and their value types:
    -- pgjobs._judge_filter), then the document fields asked for as columns,
    -- each in some row of the scope. On a scope without rows yet they are
    -- judged at the job's first attempt (pgjobs._judge_fields: judged or
    -- deferred on one walk).
    -- NULL: judged; an array, even empty, deferred (pgjobs._judge_filter).
    WITH j (filter_paths, column_paths) AS (
        SELECT pgjobs._judge_filter(v_reg, pgjobs._canonical_scope(v_reg, p_scope), p_filter,
                   (pgjobs._compile_filter(p_target, p_filter)).p_paths, v_options),
               pgjobs._judge_fields(v_reg, pgjobs._canonical_scope(v_reg, p_scope),
                   v_fields, v_options, 'option "columns"'))
    SELECT CASE WHEN j.filter_paths IS NOT NULL OR j.column_paths IS NOT NULL
                THEN ARRAY(SELECT DISTINCT p FROM unnest(coalesce(j.filter_paths, '{}')
                                                         || coalesce(j.column_paths, '{}')) p
                            ORDER BY p) END
      INTO v_unchecked
      FROM j;

    -- The options every job takes (priority, run_at, ..., any unknown one):
    -- checked again as the job is written.
    PERFORM pgjobs._job_options('export', v_options, v_keys);
    -- The destination's allow-list, once every option, the scope and the
    -- filter passed: a submit with a bad one named it, not the allow-list,
    -- as every submit does (pgjobs._submit_import_as's source alike; h81).
    IF v_destination IS NOT NULL THEN
        -- A per-tenant prefix allows the folder of the job's scope (canonical
        -- text).
        v_scope := pgjobs._canonical_scope(v_reg, p_scope);
        IF NOT pgjobs._storage_allowed_for(v_destination, v_scope) THEN
            RAISE EXCEPTION 'destination % is not under an allowed storage prefix',
                            quote_literal(v_destination)
                USING ERRCODE = '42501',
                -- the destination itself, in a call allow_storage accepts
                HINT = pgjobs._storage_allow_hint(v_destination, false)
                       || ' Or leave "destination" out to use the worker''s storage.'
                       || pgjobs._storage_scope_hint(v_scope);
        END IF;
    END IF;

    v_job := pgjobs._insert_job('export', p_target, p_scope,
        jsonb_build_object('filter', p_filter,
                           'format', v_format,
                           'columns', v_columns,
                           'document_fields', to_jsonb(v_fields),
                           'gzip', v_gzip,
                           'destination', v_destination,
                           'chunk_rows', coalesce((v_options ->> 'chunk_rows')::integer, 50000),
                           'part_size',
                           coalesce((v_options ->> 'part_size')::integer, 8388608),
                           'parallel', v_parallel)
        -- Parquet: its compression and row group bound (bytes of Arrow data).
        || CASE WHEN v_format = 'parquet' THEN jsonb_build_object(
               'compression', coalesce(v_options ->> 'compression', 'zstd'),
               'row_group_bytes', coalesce((v_options ->> 'row_group_bytes')::integer, 16777216))
           ELSE '{}'::jsonb END
        -- An empty list is a deferral too: a json column's value check
        -- (pgjobs._judge_filter).
        || CASE WHEN v_unchecked IS NOT NULL
                THEN jsonb_build_object('unchecked_fields', to_jsonb(v_unchecked))
                ELSE '{}'::jsonb END,
        v_options,
        v_keys,
        v_predicate, NULL, v_reg);
    RETURN pgjobs._leave(v_job.id);
END
$$;
