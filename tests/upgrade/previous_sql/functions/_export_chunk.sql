CREATE OR REPLACE FUNCTION pgjobs._export_chunk(
    p_id bigint,
    p_after text,
    p_limit integer,
    p_until text,
    p_next text,
    p_copy boolean,
    OUT copy_sql text,
    OUT next_after text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.export_chunk_sql (p_copy true) and of
-- pgjobs.export_chunk_bound (p_copy false: the bound alone, copy_sql NULL).
-- A bound walked ahead runs every check a chunk runs before its bound (the
-- job, the limit, the target's trust and the submitter's rights, the columns,
-- the typo guard, the key column, the cursor) but not what only the COPY
-- needs: the mask of pending deletes (about half of a chunk's statement), the
-- columns' expressions and the COPY's text. The chunk it is passed to (p_next)
-- evaluates its own mask and checks in its own snapshot.
--
-- One keyset chunk of export job p_id: the keys of the scope after p_after
-- (NULL: from the start) up to the p_limit-th one, whatever the filter,
-- and never past p_until (NULL: the scope's last key), the upper bound of a
-- part of a parallel export (pgjobs.export_parts).
-- Returns:
--   copy_sql    the complete `COPY (...) TO STDOUT` of the chunk's rows that
--               are in the job's row set (scope, cutoff, filter: the stored
--               predicate) and not masked by a pending delete (pgjobs.mask,
--               evaluated now), in key order, in the job's format;
--   next_after  the chunk's upper key, where the next chunk starts; NULL
--               when this chunk reaches the end of the scope (or p_until).
-- Call it and run the COPY in one REPEATABLE READ transaction per chunk:
-- mask and rows then come from one snapshot, and no snapshot is held for
-- the whole export. p_next: the bound (next_after) an earlier call with the
-- same p_id, p_after, p_limit and p_until returned, which the worker walked
-- ahead while the previous chunk streamed; it is used as it is (checked to
-- advance), and the mask, the privilege checks and the rows stay this
-- call's.
--
-- The bound is an index-only walk of the (scope, key) btree, so a chunk
-- costs p_limit index entries however selective the filter, and the COPY
-- streams straight from the index scan (no sort, no materialisation).
-- Keys compare as ROW(scope, key) as well as plainly: the row comparison is
-- an index condition of the (scope, key) btree only, so the planner does not
-- walk the key's own index across every scope; the plain one gives the btree
-- its start position. (A scope that fits in one chunk has neither bound: its
-- `scope = ...` condition alone is selective enough.)
--
-- Output formats:
--   csv    a header (first chunk only) and one CSV column per requested
--          column or document field (fields as text: strings bare, objects
--          and arrays as JSON), jsonb as JSON text;
--   jsonl  one JSON object per line, keys in the requested order (a column
--          holding an array whose lower bounds are not all 1 as its
--          PostgreSQL text, a JSON string: pgjobs._array_bounds_test). It is sent
--          as a one-column CSV with quote and delimiter bytes (0x01, 0x02)
--          that JSON text never holds raw, so COPY passes it unescaped.
--   parquet  CSV without a header, each column in its wire form for the
--          worker's Parquet writer (pgjobs._parquet_column: epoch
--          microseconds, days, exact text for numeric, JSON for lists, ...).
-- A key column that is no longer NOT NULL raises 55000 (a keyset walk
-- cannot reach NULL keys); so does a scope with rows while the job's typo
-- guard is still pending (payload unchecked_fields: below). Raises P0002 for an unknown job, 22023 for a job that is not an
-- export, a bad cursor or limit. Locks nothing.
DECLARE
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_format text;
    v_raw_json boolean := false;
    v_name text;
    v_type regtype;
    v_expr text;
    v_list text[] := '{}'::text[];
    v_scope text;
    v_key text;
    v_key_sql text;
    v_lower text := '';
    v_upper text := '';
    v_until text := '';
    v_select text;
    v_advances boolean;
    v_at double precision;
    v_verdict text;
    v_bounds text;
BEGIN
    PERFORM pgjobs._require_job_id(p_id);  -- 22023 for NULL, not P0002
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002',
            HINT = 'Finished jobs are pruned after the retention period.';
    END IF;
    IF v_job.kind <> 'export' OR v_job.predicate IS NULL THEN
        RAISE EXCEPTION 'job % is %, not an export', p_id, pgjobs._a_job(v_job.kind)
            USING ERRCODE = '22023', HINT = 'Submit exports with pgjobs.submit_export().';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 1000000, not %', p_limit
            USING ERRCODE = '22023', HINT = 'The default, 50000 keys, keeps each transaction short.';
    END IF;
    -- The target's trust and the submitter's rights: checked in full at the
    -- first chunk a session asks for, then again at the first chunk that
    -- starts 1 s or more after the last check, as the runner's pages do
    -- (pgjobs._run_page): at 50,000 keys a chunk, the checks cost more than
    -- many chunks' planning. A grant revoked, a role dropped, row-level
    -- security turned on or a target made untrusted stops the export within
    -- 1 s of chunks. The verdict is sealed in the session
    -- (pgjobs._verdict_fresh), keyed to the job, its target, kind and
    -- submitter.
    v_at := extract(epoch FROM clock_timestamp());
    v_reg := pgjobs._target_recent(v_job.target);
    v_verdict := concat_ws('/', v_job.id, v_job.target::oid, v_job.kind, v_job.submitted_by);
    IF NOT pgjobs._verdict_fresh('submitter', v_verdict) THEN
        PERFORM pgjobs._require_submitter(v_job, v_reg);  -- 42501: a grant revoked since submit
        PERFORM pgjobs._verdict_keep('submitter', v_verdict, v_at);
    END IF;
    -- The columns the export was submitted against (its column list and
    -- predicate name them): renamed, dropped or retyped since, the chunk
    -- would read other columns (42703/42804: the job fails for good). The
    -- table is held to the end of the chunk's transaction, which runs the
    -- COPY this returns, so none changes in between.
    PERFORM pgjobs._require_same_columns(v_job);
    v_format := coalesce(v_job.payload ->> 'format', 'csv');
    v_scope := pgjobs._scope_literal(v_reg, v_job.scope);
    -- The typo guard of an export submitted on a scope with no rows is its
    -- claim's (pgjobs._may_start_attempt), which leaves the paths pending
    -- while the scope is still empty there. Rows that reach the scope
    -- between that claim and a chunk (a restore, an import carrying
    -- created_at) were exported unjudged: a misspelt {"stauts": {"$ne":
    -- "keep"}} took the whole scope. So while the paths are pending, a chunk
    -- that would read a row (in its own snapshot, the one its COPY reads)
    -- ends the attempt instead (55000, retried: the job's next claim judges
    -- them against the rows). A scope still empty reads nothing. One probe
    -- of (scope, key), only while the list is pending.
    IF jsonb_typeof(v_job.payload -> 'unchecked_fields') = 'array' THEN
        EXECUTE format('SELECT EXISTS (SELECT FROM %s t WHERE t.%I OPERATOR(pg_catalog.=) %s)',
                       v_job.target, v_reg.scope_column, v_scope)
           INTO v_advances;
        IF v_advances THEN
            -- An empty list is a json column's value check (pgjobs._judge_filter):
            -- no field to name, so the message says what was deferred.
            RAISE EXCEPTION 'export job % cannot read rows yet: its scope had no rows when %, '
                            'and has rows now', p_id,
                CASE WHEN jsonb_array_length(v_job.payload -> 'unchecked_fields') = 0
                     THEN 'its filter''s comparisons of json columns were to be judged'
                     ELSE 'the document fields ' || array_to_string(ARRAY(
                              SELECT format('"%s"', f) FROM
                              jsonb_array_elements_text(v_job.payload -> 'unchecked_fields') f),
                              ', ') || ' were to be judged' END
                USING ERRCODE = '55000',
                HINT = 'The attempt ends and the job is retried (a parallel export''s part '
                       'alone); its next claim (the part''s) judges the fields against the rows. '
                       'Submit with the option {"allow_unknown_fields": true} if the filter is '
                       'meant as written.';
        END IF;
    END IF;
    v_key := pgjobs._column_type(v_job.target, v_reg.key_column);
    -- The bounds' casts in the COPY text: named on any path (pgjobs._type_sql),
    -- as the predicate and the mask it carries are, whatever path runs it.
    v_key_sql := pgjobs._type_sql(v_key);
    -- A keyset walk cannot reach a NULL key: registration requires NOT
    -- NULL; refuse to export a part of the rows if it was dropped since.
    IF NOT coalesce((SELECT a.attnotnull FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = v_job.target AND a.attname = v_reg.key_column
                        AND NOT a.attisdropped), false) THEN
        RAISE EXCEPTION 'key column % of % is not NOT NULL (any more)', v_reg.key_column,
            v_job.target
            USING ERRCODE = '55000',
            HINT = format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL; then submit the export '
                          'again.', v_job.target, v_reg.key_column);
    END IF;

    IF p_after IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT %L::%s', p_after, v_key);
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'cursor % is not a valid % (key column %)', quote_literal(p_after),
                v_key, v_reg.key_column
                USING ERRCODE = '22023', HINT = 'Pass next_after of the previous chunk.';
        END;
        v_lower := format(' AND %2$I OPERATOR(pg_catalog.>) %4$L::%5$s AND ROW(%1$I, %2$I) '
                          'OPERATOR(pg_catalog.>) ROW(%3$s, %4$L::%5$s)',
                          v_reg.scope_column, v_reg.key_column, v_scope, p_after, v_key_sql);
    END IF;

    IF p_until IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT %L::%s', p_until, v_key);
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'upper bound % is not a valid % (key column %)',
                quote_literal(p_until), v_key, v_reg.key_column
                USING ERRCODE = '22023', HINT = 'Pass the until_key of the export''s part.';
        END;
        v_until := format(' AND %2$I OPERATOR(pg_catalog.<=) %4$L::%5$s AND ROW(%1$I, %2$I) '
                          'OPERATOR(pg_catalog.<=) ROW(%3$s, %4$L::%5$s)',
                          v_reg.scope_column, v_reg.key_column, v_scope, p_until, v_key_sql);
    END IF;

    IF p_next IS NULL THEN
        next_after := pgjobs._nth_key(v_job.target, v_reg.scope_column, v_scope,
                                      v_reg.key_column, v_lower || v_until, p_limit - 1);
    ELSE
        -- The bound a worker walked ahead, on its control connection, while the
        -- previous chunk streamed: next_after of this very call for the same
        -- p_after, p_limit and p_until (the walk is an index-only scan of p_limit
        -- keys, as long again as a chunk's rows to walk twice). Any bound that
        -- advances only cuts the key range differently, never loses a key: it
        -- is checked to read as a key and to advance below, and a chunk too
        -- large for the worker's memory is rolled back there.
        BEGIN
            EXECUTE format('SELECT %L::%s', p_next, v_key);
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'bound % is not a valid % (key column %)', quote_literal(p_next),
                v_key, v_reg.key_column
                USING ERRCODE = '22023', HINT = 'Pass next_after of this chunk, walked ahead.';
        END;
        next_after := p_next;
    END IF;
    IF next_after IS NOT NULL AND p_after IS NOT NULL THEN
        -- The cursor must move: a key whose text does not read back as the
        -- same value would return this chunk forever.
        -- (Under the key column's own collation, as the walk orders.)
        EXECUTE format('SELECT %1$L::%2$s%4$s > %3$L::%2$s', next_after, v_key, p_after,
                       pgjobs._column_collate(v_job.target, v_reg.key_column))
           INTO v_advances;
        IF NOT coalesce(v_advances, false) THEN
            RAISE EXCEPTION 'the export cursor does not advance: key column % (%) printed % '
                            'after %',
                quote_ident(v_reg.key_column), v_key, quote_literal(next_after),
                quote_literal(p_after)
                USING ERRCODE = '55000',
                HINT = 'The key''s text does not read back as the same value: register the '
                       'table with a key of a type whose text round-trips (bigint, text, uuid).';
        END IF;
    END IF;
    IF next_after IS NOT NULL AND p_until IS NOT NULL THEN
        -- A chunk that ends exactly on the part's last key ends the part.
        EXECUTE format('SELECT %1$L::%2$s%4$s >= %3$L::%2$s', next_after, v_key, p_until,
                       pgjobs._column_collate(v_job.target, v_reg.key_column))
           INTO v_advances;
        IF v_advances THEN
            next_after := NULL;
        END IF;
    END IF;
    IF next_after IS NULL THEN
        -- The last chunk of the scope, or of the part.
        v_upper := v_until;
    ELSE
        v_upper := format(' AND %2$I OPERATOR(pg_catalog.<=) %4$L::%5$s AND ROW(%1$I, %2$I) '
                          'OPERATOR(pg_catalog.<=) ROW(%3$s, %4$L::%5$s)',
                          v_reg.scope_column, v_reg.key_column, v_scope, next_after, v_key_sql);
    END IF;

    IF NOT p_copy THEN
        RETURN;  -- the bound alone (pgjobs.export_chunk_bound)
    END IF;

    FOR v_name IN
        SELECT c.value FROM jsonb_array_elements_text(v_job.payload -> 'columns') c
    LOOP
        -- The output names a field by its alias, which PostgreSQL cuts to 63
        -- bytes: a CSV header or JSON key that is not the field's name (two
        -- fields sharing 63 bytes would be one key twice). Parquet names its
        -- columns from the payload. A job submitted before submit_export
        -- refused such names fails here, for good.
        IF v_format IN ('csv', 'jsonl') AND octet_length(v_name) > 63 THEN
            RAISE EXCEPTION 'document field "%..." of option "columns" is longer than 63 bytes: '
                            'the % output would name it cut short', left(v_name, 63), v_format
                USING ERRCODE = '22023',
                HINT = 'Export the whole document column instead (list it in "columns"), or '
                       'use format parquet, whose columns keep any name.';
        END IF;
        IF v_job.payload -> 'document_fields' ? v_name THEN
            v_expr := format('%I OPERATOR(pg_catalog.%s) %L::pg_catalog.text[]',
                             v_reg.document_column,
                             CASE WHEN v_format IN ('csv', 'parquet') THEN '#>>' ELSE '#>' END,
                             string_to_array(v_name, '.'));
        ELSIF v_format = 'parquet' THEN
            -- Typed for Parquet by pgjobs._parquet_column, the one mapping
            -- (pgjobs.export_parquet_columns gives the worker the same types).
            SELECT (pgjobs._parquet_column(a.atttypid, a.atttypmod, format('%I', v_name))).wire
              INTO v_expr
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v_job.target AND a.attname = v_name
               AND a.attnum > 0 AND NOT a.attisdropped;
            v_expr := coalesce(v_expr, format('%I', v_name));  -- gone: the COPY raises 42703
        ELSE
            -- A column (resolved at submit): if it is gone now, the COPY fails
            -- with 42703 and so does the job.
            SELECT a.atttypid::regtype INTO v_type
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v_job.target AND a.attname = v_name
               AND a.attnum > 0 AND NOT a.attisdropped;
            -- json keeps its input text, raw line ends included, which would
            -- split the JSONL line: they are made spaces (json text holds CR
            -- and LF only between tokens: its strings escape them), and the
            -- text is otherwise kept as stored, as csv and parquet keep it.
            -- Through jsonb (what this did before) a value lost the members a
            -- later duplicate key replaces ({"a":1,"a":2} came out {"a": 2}),
            -- its key order and number spellings, and one jsonb refuses (a
            -- \u0000 escape, a lone surrogate) failed the chunk.
            v_expr := CASE WHEN v_format = 'jsonl' AND v_type = 'json'::regtype
                           THEN format('pg_catalog.translate(%1$I::pg_catalog.text, '
                                       'E''\r\n'', ''  '')::pg_catalog.json', v_name)
                           ELSE format('%I', v_name) END;
            -- Any other type that may hold json (a domain over json, an
            -- array or a composite of it, a type with a cast to json) puts
            -- its text into the line as it is, raw line ends included: the
            -- record spread over two lines. Such a line has its CR and LF
            -- made spaces (row_to_json escapes them in every string, so
            -- they are only ever json's whitespace).
            -- An array whose lower bounds are not all 1 ('[0:1]={a,b}'),
            -- wherever it sits in the value, makes the value travel as its
            -- PostgreSQL text, a JSON string (pgjobs._array_bounds_test, the
            -- rule pgjobs.visible keeps too): row_to_json wrote it as if it
            -- started at 1, and the import read back another value. A value
            -- whose arrays start at 1 is written as it always was.
            IF v_format = 'jsonl' THEN
                v_bounds := pgjobs._array_bounds_test(format('%I', v_name), v_type);
                IF v_bounds IS NOT NULL THEN
                    v_expr := format('CASE WHEN %s THEN pg_catalog.to_json(%I::pg_catalog.text) '
                                     'ELSE pg_catalog.to_json(%s) END', v_bounds, v_name, v_expr);
                END IF;
            END IF;
            IF v_format = 'jsonl' AND v_type IS DISTINCT FROM 'json'::regtype THEN
                v_raw_json := v_raw_json OR EXISTS (
                    SELECT FROM pg_catalog.pg_type ty
                     WHERE ty.oid = v_type
                       AND NOT (ty.typtype = 'b' AND ty.typcategory <> 'A'
                                AND ty.typnamespace = 'pg_catalog'::regnamespace));
            END IF;
        END IF;
        v_list := v_list || format('%s AS %I', v_expr, v_name);
    END LOOP;

    -- ORDER BY the table's key column (qualified: an output alias of the same
    -- name must not shadow it).
    v_select := format('SELECT %1$s FROM %2$s pgjobs_t WHERE %3$I OPERATOR(pg_catalog.=) %4$s%5$s%6$s '
                       'AND (%7$s) '
                       'AND (%8$s) ORDER BY pgjobs_t.%9$I',
                       array_to_string(v_list, ', '), v_job.target, v_reg.scope_column, v_scope,
                       v_lower, v_upper, v_job.predicate,
                       pgjobs.mask(v_job.target, v_job.scope), v_reg.key_column);

    IF v_format = 'parquet' THEN
        copy_sql := format('COPY (%s) TO STDOUT WITH (FORMAT csv)', v_select);
    ELSIF v_format = 'jsonl' THEN
        -- The row is o.*, never a bare o: PostgreSQL takes a bare name for a
        -- column before a table's whole row, so a column (or document field)
        -- named o made each line that column's value, or failed the chunk.
        copy_sql := format('COPY (SELECT %s FROM (%s) o) TO STDOUT '
                           'WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')',
                           CASE WHEN v_raw_json
                                THEN 'pg_catalog.translate(pg_catalog.row_to_json(o.*)::pg_catalog.text, '
                                     'E''\r\n'', ''  '')'
                                ELSE 'pg_catalog.row_to_json(o.*)::pg_catalog.text' END,
                           v_select);
    ELSE
        copy_sql := format('COPY (%s) TO STDOUT WITH (FORMAT csv, HEADER %s)', v_select,
                           CASE WHEN p_after IS NULL THEN 'true' ELSE 'false' END);
    END IF;
END
$$;
