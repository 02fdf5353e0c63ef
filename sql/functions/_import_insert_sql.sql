CREATE OR REPLACE FUNCTION pgjobs._import_insert_sql(
    p_job pgjobs.jobs,
    p_reg pgjobs.target_registry,
    p_fields text[],
    p_guarded boolean)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one statement that moves staged records of import p_job into its
-- target: INSERT ... SELECT from pg_temp.pgjobs_import_stage (rows whose n
-- is in $1, or all when $1 is NULL, in source order). With on_duplicate
-- update it returns one row: how many rows were inserted and how many
-- updated (WITH ... RETURNING); otherwise it is the plain INSERT, whose
-- row count is the rows inserted (pgjobs.import_batch tells them apart by
-- the leading WITH). p_fields names what each staged
-- value is (a CSV header; a JSONL record's keys): a column of the target,
-- else (when the target has a document column) a document field, a dotted
-- path nesting. CSV values are text (cast to the column's type, pgjobs._value_type; a
-- document field gets a JSON string); JSONL values are JSON (a column gets
-- the scalar's text, a json/jsonb column the value, a document field the
-- value; a JSON array for an array column: an array of its elements'
-- texts). The scope column is always the job's scope: a record naming
-- another fails (pgjobs._import_refuse), and so does one that comes out of
-- the statement in another scope (a BEFORE trigger computing it:
-- pgjobs._refuse_scope_move in RETURNING). Columns not named (a missing key
-- or created_at) take their defaults. on_duplicate skip / update add ON
-- CONFLICT on the columns pgjobs._import_conflict_columns names (update:
-- the given columns are overwritten; document fields merged into the
-- existing document, a record rejected where the row holds no object
-- where they merge in, unless the job's replace_non_objects; a key-only index never touches another scope's row;
-- a column the scope or key is generated from is never overwritten:
-- 22023, pgjobs._generated_from).
-- p_guarded: a column of a type whose input may refuse a bad value outside
-- class 22 (pgjobs._import_input_guarded) is read through
-- pgjobs._import_input / pgjobs._import_json_input, a subtransaction per
-- value, so that such a value is one bad record; when false, by the plain
-- cast every other column takes. Both statements store the same rows from
-- the same records; they differ only in the error a bad value raises, so
-- pgjobs.import_batch runs the plain one first and the guarded one only
-- once the plain one failed (an hstore column read 3x slower guarded).
-- Raises 22023 for fields that cannot be mapped, 42501 when the job's
-- submitter may not INSERT (or UPDATE) one of the columns it writes.
-- Locks nothing.
DECLARE
    v_csv boolean := p_job.payload ->> 'format' = 'csv';
    v_mode text := p_job.payload ->> 'on_duplicate';
    v_conflict text[];
    v_columns text[] := '{}'::text[];
    v_values text[] := '{}'::text[];
    v_doc_paths text[] := '{}'::text[];
    v_doc_exprs text[] := '{}'::text[];
    v_doc_base text;
    v_doc_type text;
    v_field text;
    v_src text;
    v_exact boolean;
    v_json text;
    v_type text;
    v_expr text;
    v_scope_lit text := pgjobs._scope_literal(p_reg, p_job.scope);
    v_identity boolean := false;
    v_att record;
    v_path text;
    v_seg text;
    v_updates text[] := '{}'::text[];
    v_action text := '';
    v_col text;
    v_relative text;
    v_twin text;
    v_returning text := '(t.xmax::text = ''0'') AS fresh';
    v_fresh text := 'w.fresh';
    v_updated text[] := '{}'::text[];
    v_then jsonb := p_job.checkpoint -> 'mapping';
    v_now jsonb;
    v_problem record;
    v_role name;  -- the submitter's name now (pgjobs._submitter_name)
    v_fixed text;
    v_moved text;
    v_shape jsonb;
    v_any_exact boolean := false;
    v_line text;
    v_guard boolean;
    v_elem regtype;
    v_read_json text;
    v_read_pre text;
    v_read_post text;
    -- (the place of a value's text x in v_read_pre || x || v_read_post)
    v_x constant text := '$pgjobs_x$';
    v_dupes text;
    v_dupes_src text;
    v_dup_at integer;
    v_overlap boolean;
BEGIN
    IF p_fields IS NULL OR cardinality(p_fields) = 0 THEN
        RAISE EXCEPTION 'the source names no fields' USING ERRCODE = '22023',
            HINT = 'A CSV source starts with a header row naming columns or document fields.';
    END IF;
    -- A JSONL record names its own fields, each read by this function and
    -- built into the statement: a record of 5,000 fields (a 70 KB line)
    -- held the batch, and its scope's writer gate, for about a minute
    -- (h151). At most as many as a table has columns (a CSV header 1,599,
    -- besides the staging table's record number); a record naming more is
    -- rejected (22023, counted against max_rejects), as one naming a bad
    -- field is.
    IF NOT v_csv AND cardinality(p_fields) > 1600 THEN
        RAISE EXCEPTION 'the record names % fields, more than the 1600 a JSON Lines import reads',
                        cardinality(p_fields)
            USING ERRCODE = '22023',
            HINT = 'Carry many values in fewer fields (a JSON object or array in one document '
                   'field or jsonb column), or split the fields over several records sharing '
                   'the key, imported with on_duplicate "update".';
    END IF;
    -- Each field was compared with every field before it, twice (a name
    -- given twice; document paths overlapping): 12.5 million comparisons
    -- for 5,000 fields (h151). Found once here, by hashing; the loop below
    -- raises at the same field with the same words.
    SELECT min(d.i) INTO v_dup_at
      FROM (SELECT f.i, row_number() OVER (PARTITION BY f.name ORDER BY f.i) AS k
              FROM unnest(p_fields) WITH ORDINALITY f (name, i)
             WHERE f.name IS NOT NULL AND f.name <> '') d
     WHERE d.k > 1;
    v_overlap := EXISTS (
        SELECT FROM unnest(p_fields) f (name)
          CROSS JOIN LATERAL (SELECT string_to_array(f.name, '.') AS segs) s
          CROSS JOIN LATERAL generate_series(1, least(cardinality(s.segs), 301) - 1) k
          JOIN unnest(p_fields) g (name)
            ON g.name = array_to_string(s.segs[1 : k], '.')
         WHERE f.name LIKE '%.%');
    -- The mapping is decided once, at the import's first batch (stored in
    -- the checkpoint by pgjobs.import_batch): a later batch or a resume that
    -- would send a field elsewhere (the target changed) is refused.
    IF v_then IS NOT NULL THEN
        v_now := pgjobs._import_mapping(p_reg, p_fields);
        SELECT format('field "%s" went to %s at the start of the import and would go to %s now',
                      n.key, v_then ->> n.key, n.value #>> '{}')
          INTO v_field
          FROM jsonb_each(v_now) n
         WHERE v_then ? n.key AND v_then -> n.key IS DISTINCT FROM n.value
         ORDER BY n.key
         LIMIT 1;
        IF v_field IS NOT NULL THEN
            RAISE EXCEPTION 'import % cannot go on: the target changed since it began: %',
                            p_job.id, v_field
                USING ERRCODE = '55000',
                HINT = 'Restore the column as it was and pgjobs.retry the job, or cancel it, '
                       'delete the rows it wrote (its batches are committed) and submit it again.';
        END IF;
    END IF;
    FOR v_i IN 1 .. cardinality(p_fields) LOOP
        v_field := p_fields[v_i];
        IF v_field IS NULL OR v_field = '' THEN
            RAISE EXCEPTION 'field % of the source has an empty name', v_i
                USING ERRCODE = '22023', HINT = 'Name every column of the header.';
        END IF;
        IF v_i = v_dup_at THEN
            RAISE EXCEPTION 'the source names field "%" twice', v_field
                USING ERRCODE = '22023', HINT = 'Name each column or document field once.';
        END IF;
        v_src := CASE WHEN v_csv THEN format('s.%I', 'f' || v_i)
                      ELSE format('(x.j -> %L)', v_field) END;
        SELECT a.attname, a.attidentity, a.attgenerated, a.atttypid,
               coalesce((SELECT t.typcategory = 'A' FROM pg_catalog.pg_type t
                          WHERE t.oid = a.atttypid), false) AS is_array
          INTO v_att
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_reg.target AND a.attname = v_field
           AND a.attnum > 0 AND NOT a.attisdropped;
        IF FOUND THEN
            IF v_att.attgenerated <> '' THEN
                RAISE EXCEPTION 'column "%" of % is generated and cannot be imported', v_field,
                                p_reg.target
                    USING ERRCODE = '22023', HINT = 'Leave it out of the source.';
            END IF;
            -- (a partition generating it would store its own value instead)
            PERFORM pgjobs._import_generated_below(p_reg.target, v_field,
                                                   'the source''s values');
            v_identity := v_identity OR v_att.attidentity = 'a';
            -- Cast as COPY would take it: to the column's full type, but a
            -- string or bit string of a length to the type without it, the
            -- INSERT's assignment refusing a value too long rather than
            -- the cast cutting it (pgjobs._value_type).
            v_type := pgjobs._value_type(p_reg.target, v_field);
            -- A type whose input may refuse a bad value with an error
            -- outside class 22 (hstore: XX000; ltree, tsvector: 42601),
            -- which failed the whole job, is read through
            -- pgjobs._import_input: such a value is one bad record, its
            -- column named. Other types are a plain cast, at no cost.
            v_guard := p_guarded AND pgjobs._import_input_guarded(v_att.atttypid);
            -- (an array's element type: its text is read as an array of it)
            v_elem := (SELECT nullif(t.typelem, 0)::regtype FROM pg_catalog.pg_type t
                        WHERE t.oid = pgjobs._base_type(v_att.atttypid)
                          AND t.typsubscript = 'array_subscript_handler'::regproc);
            -- A value jsonb would change is read from the line's json text
            -- instead (x.t): jsonb keeps a number as numeric, which has no
            -- -0 (a float's -0 came back 0), and a json column's text
            -- (duplicate keys, key order, number spellings) is not jsonb's.
            -- Only for such columns: json's -> parses the line again for
            -- each one (tests/test_roundtrip.py).
            v_exact := NOT v_csv AND pgjobs._base_type(coalesce(
                (SELECT nullif(t.typelem, 0) FROM pg_catalog.pg_type t
                  WHERE t.oid = pgjobs._base_type(v_att.atttypid) AND t.typcategory = 'A'),
                pgjobs._base_type(v_att.atttypid))::regtype)
                IN ('real'::regtype, 'double precision'::regtype, 'json'::regtype);
            -- An array (of any dimensions) or a composite, through domains,
            -- as a JSONL export writes it: nested JSON arrays, a JSON object
            -- of fields (pgjobs._import_json_shape; NULL: neither).
            v_shape := CASE WHEN NOT v_csv THEN pgjobs._import_json_shape(v_att.atttypid) END;
            IF NOT coalesce(v_shape ?| ARRAY['array', 'fields'], false) THEN
                v_shape := NULL;
            END IF;
            -- (a float or json anywhere inside it: read from the line's json)
            v_exact := v_exact OR coalesce(v_shape @? '$.** ? (@.exact == true)', false);
            v_json := CASE WHEN v_exact THEN 'json' ELSE 'jsonb' END;
            IF v_exact THEN
                v_src := format('(x.t -> %L)', v_field);
                v_any_exact := true;
            END IF;
            -- A composite anywhere inside (a JSON object read as its fields):
            -- an object naming a field twice is a rejected record
            -- (pgjobs._import_json_dupes, 22030), judged on the line's json
            -- text, where jsonb kept only the last of them.
            v_dupes_src := CASE WHEN v_exact THEN 'pgjobs_v.e'
                                ELSE format('(x.t -> %L)', v_field) END;
            v_dupes := pgjobs._import_json_dupes_sql(v_dupes_src, v_shape);
            v_dupes := CASE WHEN v_dupes IS NOT NULL THEN format(
                'CASE WHEN %1$s THEN pgjobs._import_json_dupes(%2$s, %3$L::jsonb, %4$L) '
                'ELSE true END', v_dupes, v_dupes_src, v_shape, v_field) END;
            v_any_exact := v_any_exact OR v_dupes IS NOT NULL;
            -- (A value's text x is read as v_read_pre || x || v_read_post:
            -- the type's input, as every other entry point reads a text
            -- (pgjobs._text_input: a regclass by its oid too, which
            -- text::regclass refused), cut at the place of x.)
            v_read_pre := pgjobs._text_input(CASE WHEN v_guard THEN format(
                'pgjobs._import_input(%s, %L::regtype, %L, %L)', v_x,
                coalesce(v_elem, pgjobs._base_type(v_att.atttypid)), v_elem IS NOT NULL, v_field)
                ELSE v_x END, v_type);
            v_read_post := substr(v_read_pre, strpos(v_read_pre, v_x) + length(v_x));
            v_read_pre := left(v_read_pre, strpos(v_read_pre, v_x) - 1);
            v_read_json := CASE WHEN v_guard
                THEN format('pgjobs._import_json_input(pgjobs_v.e::text, %1$L, %2$L, %3$L)::%1$s',
                            v_type, v_field, v_exact)
                ELSE format('(SELECT pgjobs_p.%2$I FROM pg_catalog.%1$s_to_record('
                            'pg_catalog.%1$s_build_object(%2$L, pgjobs_v.e)) AS pgjobs_p (%2$I %3$s))',
                            v_json, v_field, v_type) END;
            v_expr := CASE
                WHEN v_csv THEN v_read_pre || v_src || v_read_post
                -- The value itself, also for a domain over json or jsonb
                -- (its text, #>>, would unquote a JSON string).
                WHEN pgjobs._base_type(v_att.atttypid) = 'jsonb'::regtype THEN format(
                    'nullif(%s, ''null''::jsonb)::%s', v_src, v_type)
                WHEN pgjobs._base_type(v_att.atttypid) = 'json'::regtype THEN format(
                    '(CASE WHEN json_typeof(%1$s) <> ''null'' THEN %1$s END)::%2$s', v_src, v_type)
                -- A JSON array or object for an array or composite (also
                -- nested, in a domain, NULL at any level) is read by
                -- PostgreSQL's own json(b)_to_record, once checked
                -- (pgjobs._import_json_check: rectangular, only the type's
                -- fields; called only where pgjobs._import_json_fast, an
                -- expression, does not pass the value); any other
                -- value is the type's PostgreSQL text ('{a,b}', '(1,x)',
                -- '[0:1]={1,2}', as an export writes bounds not at 1). The
                -- value is taken from the line once (OFFSET 0: each mention
                -- of x.j parses the line again; an int[] column of 200,000
                -- records read in 0.7-1.0x the time of the former
                -- ARRAY(SELECT jsonb_array_elements_text(..)), 8 alternated runs).
                WHEN v_shape IS NOT NULL THEN format(
                    '(SELECT CASE WHEN %1$s_typeof(pgjobs_v.e) IN (''array'', ''object'') THEN '
                    '%8$s CASE WHEN %2$s THEN %6$s END %9$s'
                    'ELSE %7$s END FROM (SELECT %5$s AS e OFFSET 0) pgjobs_v)',
                    v_json,
                    -- (a value pgjobs._import_json_fast passes needs no call)
                    format('coalesce((SELECT %1$s FROM (SELECT pgjobs_v.e::jsonb AS v OFFSET 0) '
                           'pgjobs_w), false) OR pgjobs._import_json_check(pgjobs_v.e::jsonb, '
                           '%2$L::jsonb, %3$L)',
                           pgjobs._import_json_fast('pgjobs_w.v', v_shape), v_shape, v_field),
                    v_field, v_type, v_src, v_read_json,
                    v_read_pre || 'pgjobs_v.e #>> ''{}''' || v_read_post,
                    CASE WHEN v_dupes IS NOT NULL THEN format('CASE WHEN %s THEN', v_dupes) END,
                    CASE WHEN v_dupes IS NOT NULL THEN 'END ' END)
                -- An array of json or jsonb (through domains): a JSON array
                -- is one dimension of its elements' JSON values (a string
                -- stays a string: their text, unquoted, read "1" as the
                -- number 1 and refused "x"), null an SQL NULL; a string is
                -- the array's PostgreSQL text ('{null,NULL}', which a JSONL
                -- export writes for an array a JSON array would not carry:
                -- pgjobs._array_bounds_test).
                WHEN v_att.is_array AND pgjobs._base_type(coalesce(
                    (SELECT nullif(t.typelem, 0) FROM pg_catalog.pg_type t
                      WHERE t.oid = pgjobs._base_type(v_att.atttypid)),
                    v_att.atttypid)) IN ('json'::regtype, 'jsonb'::regtype) THEN format(
                    'CASE WHEN %3$s_typeof(%1$s) = ''array'' THEN ARRAY(SELECT CASE WHEN '
                    '%3$s_typeof(pgjobs_a.e) <> ''null'' THEN pgjobs_a.e END FROM '
                    '%3$s_array_elements(%1$s) WITH ORDINALITY pgjobs_a (e, o) ORDER BY '
                    'pgjobs_a.o)::%2$s ELSE (%1$s #>> ''{}'')::%2$s END',
                    v_src, v_type, v_json)
                -- A JSON array (as exports write array columns) becomes an array;
                -- a string is read as an array literal ('{a,b}').
                WHEN v_att.is_array AND v_guard THEN format(
                    'CASE WHEN %3$s_typeof(%1$s) = ''array'' THEN %4$s ELSE %5$s END',
                    v_src, v_type, v_json,
                    v_read_pre || format('ARRAY(SELECT %s_array_elements_text(%s))::text',
                                         v_json, v_src) || v_read_post,
                    v_read_pre || v_src || ' #>> ''{}''' || v_read_post)
                WHEN v_att.is_array THEN format(
                    'CASE WHEN %3$s_typeof(%1$s) = ''array'' THEN ARRAY(SELECT '
                    '%3$s_array_elements_text(%1$s))::%2$s ELSE (%1$s #>> ''{}'')::%2$s END',
                    v_src, v_type, v_json)
                ELSE v_read_pre || v_src || ' #>> ''{}''' || v_read_post END;
            IF v_field = p_reg.scope_column THEN
                v_expr := format(
                    'CASE WHEN %1$s IS NULL OR %1$s = %2$s THEN %2$s ELSE '
                    'pgjobs._import_refuse(format(%3$L, %1$s))::%4$s END',
                    v_expr, v_scope_lit,
                    'the scope column ' || v_field || ' is %s, not the job''s scope '
                        || replace(p_job.scope, '%', '%%'),
                    v_type);
            END IF;
            IF v_field = p_reg.document_column THEN
                v_doc_base := v_expr;
                v_doc_type := v_type;
                CONTINUE;
            END IF;
            v_columns := v_columns || v_field;
            v_values := v_values || v_expr;
            CONTINUE;
        END IF;
        IF p_reg.document_column IS NULL THEN
            RAISE EXCEPTION 'unknown column "%": % has no such column and no document column',
                            v_field, p_reg.target
                USING ERRCODE = '22023',
                HINT = format('Columns: %s.', (
                    SELECT string_agg(a.attname, ', ' ORDER BY a.attnum)
                      FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = p_reg.target AND a.attnum > 0
                       AND NOT a.attisdropped));
        END IF;
        -- A header "Name" for the column name (spreadsheets capitalise), or
        -- "data.x" for the document's field x, is a slip far more often than
        -- a new document field: every record's value would land in the
        -- document and the column meant would take its default. Refused
        -- unless the job says allow_unknown_fields, when a batch first maps
        -- the field (one the stored mapping holds already keeps its place:
        -- an import that began before this check goes on as it began).
        IF NOT coalesce(v_then ? v_field, false)
           AND NOT coalesce((p_job.options ->> 'allow_unknown_fields')::boolean, false) THEN
            SELECT s.column_name, s.relative_path INTO v_col, v_relative
              FROM pgjobs._field_slip(p_reg, v_field) s;  -- the one slip test
            -- And a document field of the scope's rows in another case or
            -- in look-alike characters, or under a parent so written
            -- ("Status" where they say "status", "NEST.a" for nest.a; the
            -- path a slip means: "data.NEST.a"): pgjobs._field_twin, judged
            -- by the rows dated at or before the job's cutoff, so that the
            -- job's own earlier batches never judge a later field. Only
            -- when the submitter may read the document column: the message
            -- names what a row holds.
            v_twin := NULL;
            IF v_col IS NULL AND EXISTS (
                    SELECT 1 FROM pg_catalog.pg_roles r
                     WHERE r.oid = p_job.submitted_by_oid
                       AND has_column_privilege(r.oid, p_reg.target, p_reg.document_column,
                                                'SELECT')) THEN
                v_twin := pgjobs._field_twin(p_reg, p_job.scope, coalesce(v_relative, v_field),
                                             p_job.cutoff);
            END IF;
            IF v_col IS NOT NULL OR v_relative IS NOT NULL OR v_twin IS NOT NULL THEN
                -- (The guess is in the message: a JSONL record's error is
                -- shown with the rejects' hint in place of this one.)
                RAISE EXCEPTION 'field "%" of the source is not a column of %: %', v_field,
                                p_reg.target,
                                CASE WHEN v_col IS NOT NULL
                                     THEN format('did you mean column "%s"? (names are '
                                                 'compared exactly: case, white space '
                                                 'around a name and look-alike characters '
                                                 'count)', v_col)
                                     WHEN v_relative IS NULL
                                     THEN format('did you mean document field "%s"? (the '
                                                 'scope''s rows have it; names are compared '
                                                 'exactly: case and look-alike characters '
                                                 'count)', v_twin)
                                     ELSE format('fields are relative to column %I, and white '
                                                 'space around a name (or an invisible '
                                                 'character in it) is part of it: write '
                                                 '"%s"', p_reg.document_column,
                                                 coalesce(v_twin, v_relative))
                                END
                    USING ERRCODE = '22023',
                    HINT = 'Rename the field in the source; to import it as a document field '
                           'as written, submit with the option {"allow_unknown_fields": true}.';
            END IF;
            v_col := NULL;
            -- A CSV saved with another separator (";" is a spreadsheet's
            -- default where the decimal mark is a comma; a tab, "|") reads
            -- as one field per line: its header one name "name;age", every
            -- record one value of it, all landing in one document field while
            -- every column kept its default. A name holding a separator
            -- between two names is that, far more often than a field so named.
            IF v_csv THEN
                SELECT d.sep INTO v_col
                  FROM unnest(ARRAY[';', chr(9), '|']) WITH ORDINALITY AS d(sep, n)
                 WHERE (SELECT count(*) FROM unnest(string_to_array(v_field, d.sep)) part(p)
                         WHERE btrim(part.p) <> '') > 1
                 ORDER BY d.n
                 LIMIT 1;
                IF v_col IS NOT NULL THEN
                    RAISE EXCEPTION 'field "%" of the CSV header holds % between names: the '
                                    'source looks separated by %, and pgjobs reads CSV '
                                    'separated by commas', replace(v_field, chr(9), '\t'),
                                    CASE v_col WHEN chr(9) THEN 'a tab' ELSE '"' || v_col || '"' END,
                                    CASE v_col WHEN chr(9) THEN 'tabs' ELSE '"' || v_col || '"' END
                        USING ERRCODE = '22023',
                        HINT = 'Save the file as comma-separated CSV (a spreadsheet''s "CSV '
                               '(comma delimited)"), then import it as a new job; to import '
                               'the field as a document field as written, submit with the '
                               'option {"allow_unknown_fields": true}.';
                END IF;
            END IF;
        END IF;
        -- The record's document is built a level per call
        -- (pgjobs._import_document_expr): a header's "a.a.a..." of a
        -- thousand segments ended the import on "stack depth limit
        -- exceeded" (54001, its hint to raise max_stack_depth): 300 levels
        -- import (tests/test_import_merge_native.py), 400 no longer did.
        IF cardinality(string_to_array(v_field, '.')) > 300 THEN
            RAISE EXCEPTION 'field "%" of the source nests % levels; the limit is 300',
                            left(v_field, 200), cardinality(string_to_array(v_field, '.'))
                USING ERRCODE = '22023',
                HINT = 'Name document fields of at most 300 dotted parts, or carry the deep '
                       'value whole in one field (a JSONL object).';
        END IF;
        FOREACH v_seg IN ARRAY string_to_array(v_field, '.') LOOP
            IF v_seg = '' OR left(v_seg, 1) = '$' THEN
                RAISE EXCEPTION 'field "%" is neither a column nor a document field path',
                                v_field
                    USING ERRCODE = '22023',
                    HINT = 'Document fields are written a.b.c: no empty parts, no leading $.';
            END IF;
        END LOOP;
        -- (v_overlap: no field is a dotted prefix of another, so no two
        -- document paths overlap and the comparisons are not made.)
        FOREACH v_path IN ARRAY CASE WHEN v_overlap THEN v_doc_paths
                                     ELSE '{}'::text[] END LOOP
            IF left(v_path, length(v_field) + 1) = v_field || '.'
               OR left(v_field, length(v_path) + 1) = v_path || '.' THEN
                RAISE EXCEPTION 'document fields "%" and "%" overlap', v_path, v_field
                    USING ERRCODE = '22023',
                    HINT = 'A field cannot hold a value and nested fields at once.';
            END IF;
        END LOOP;
        v_doc_paths := v_doc_paths || v_field;
        v_doc_exprs := v_doc_exprs || CASE WHEN v_csv THEN format('to_jsonb(%s)', v_src)
                                           ELSE v_src END;
    END LOOP;

    -- Document fields write the document column: a generated one refuses
    -- them (every record was rejected with PostgreSQL's "cannot insert a
    -- non-DEFAULT value"), as a generated column the source names is.
    IF cardinality(v_doc_paths) > 0 AND EXISTS (
            SELECT FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_reg.target AND a.attname = p_reg.document_column
               AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> '') THEN
        RAISE EXCEPTION 'field "%" is a document field, and the document column "%" of % is '
                        'generated and cannot be imported', v_doc_paths[1],
                        p_reg.document_column, p_reg.target
            USING ERRCODE = '22023',
            HINT = 'Leave document fields out of the source: name only columns of the target.';
    END IF;
    IF cardinality(v_doc_paths) > 0 OR v_doc_base IS NOT NULL THEN
        v_doc_type := coalesce(v_doc_type,
                               pgjobs._column_type(p_reg.target, p_reg.document_column));
        IF cardinality(v_doc_paths) = 0 THEN
            v_expr := v_doc_base;
        ELSE
            v_expr := pgjobs._import_document_expr(v_doc_paths, v_doc_exprs, 1, v_csv);
            IF v_csv THEN
                -- An empty unquoted CSV field is NULL: the field is left out,
                -- and so is an object all of whose fields are.
                v_expr := format('jsonb_strip_nulls(%s)', v_expr);
            END IF;
            IF v_doc_base IS NOT NULL THEN
                v_expr := format('pgjobs._jsonb_merge(coalesce((%s)::jsonb, ''{}''::jsonb), %s)',
                                 v_doc_base, v_expr);
            END IF;
            v_expr := format('(%s)::%s', v_expr, v_doc_type);
        END IF;
        v_columns := v_columns || p_reg.document_column::text;
        v_values := v_values || v_expr;
    END IF;

    IF NOT p_reg.scope_column = ANY (v_columns) THEN
        v_columns := v_columns || p_reg.scope_column::text;
        v_values := v_values || v_scope_lit;
    END IF;

    IF v_mode IN ('skip', 'update') THEN
        v_conflict := pgjobs._import_conflict_columns(p_reg);
        IF v_conflict IS NULL THEN
            RAISE EXCEPTION 'on_duplicate "%" needs a unique index on (%, %) of %', v_mode,
                            p_reg.scope_column, p_reg.key_column, p_reg.target
                USING ERRCODE = '55000',
                HINT = pgjobs._unique_key_hint(p_reg);
        END IF;
        IF v_mode = 'update' THEN
            FOREACH v_col IN ARRAY v_columns LOOP
                CONTINUE WHEN v_col = ANY (v_conflict) OR v_col = p_reg.scope_column;
                -- Overwriting a column the scope or the key is generated from
                -- would move the row to another scope (or key):
                -- pgjobs._generated_from, the rule of backfill's set too.
                SELECT g.generated INTO v_fixed
                  FROM pgjobs._generated_from(p_reg.target, ARRAY[p_reg.scope_column::text,
                                                                   p_reg.key_column::text]) g
                 WHERE g.source = v_col
                 LIMIT 1;
                IF FOUND THEN
                    RAISE EXCEPTION 'import % cannot update column "%": the % column "%" is generated from it',
                                    p_job.id, v_col,
                                    CASE v_fixed WHEN p_reg.scope_column::text THEN 'scope'
                                                 ELSE 'key' END, v_fixed
                        USING ERRCODE = '22023',
                        HINT = 'Updating it would move the row to another scope (or change its '
                               'key): leave it out of the source, or import with on_duplicate '
                               '"skip" or "error".';
                END IF;
                v_updated := v_updated || v_col;
                IF v_col = p_reg.document_column AND v_doc_base IS NULL THEN
                    -- Only document fields given: merged into the row's
                    -- document (pgjobs._import_merge_sql). A row holding a
                    -- string, number, boolean or array where they make an
                    -- object rejects the record (pgjobs._import_doc_merge):
                    -- that value would be lost; or, with the job's option
                    -- replace_non_objects, has it replaced
                    -- (pgjobs._jsonb_merge). Written out with the native
                    -- operators where the row holds objects, so such a
                    -- record costs no PL/pgSQL call: the functions' calls
                    -- per record and per field took 1.8 s of a 5.9 s import
                    -- of 100,000 flat records, and 8.7 s for nested ones
                    -- (3.7x a COPY and INSERT ... ON CONFLICT DO UPDATE).
                    v_updates := v_updates || format('%1$I = (%2$s)::%3$s', v_col,
                        pgjobs._import_merge_sql(format('t.%I::jsonb', v_col),
                            format('EXCLUDED.%I::jsonb', v_col), v_doc_paths,
                            NOT coalesce((p_job.options ->> 'replace_non_objects')::boolean,
                                         false)),
                        v_doc_type);
                ELSE
                    v_updates := v_updates || format('%1$I = EXCLUDED.%1$I', v_col);
                END IF;
            END LOOP;
        END IF;
        IF cardinality(v_updates) = 0 THEN
            v_action := format(' ON CONFLICT (%s) DO NOTHING',
                               (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_conflict) c));
        ELSE
            v_action := format(' ON CONFLICT (%s) DO UPDATE SET %s WHERE t.%I = EXCLUDED.%I',
                               (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_conflict) c),
                               array_to_string(v_updates, ', '),
                               p_reg.scope_column, p_reg.scope_column);
        END IF;
    END IF;

    -- Inserted or updated: xmax is 0 on a row the statement inserted. A
    -- partitioned table returns no system column, so there a row returned
    -- by ON CONFLICT DO UPDATE counts as updated when its conflict columns
    -- were in the table before the statement (the main query of a WITH
    -- sees the table as the INSERT found it); without DO UPDATE, every row
    -- returned was inserted.
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = p_reg.target) = 'p' THEN
        IF cardinality(v_updates) > 0 THEN
            SELECT string_agg(format('t.%I AS %I', c.col, 'pgjobs_c' || c.ord), ', '),
                   format('NOT EXISTS (SELECT FROM %s o WHERE %s)', p_reg.target,
                          string_agg(format('o.%I = w.%I', c.col, 'pgjobs_c' || c.ord), ' AND '))
              INTO v_returning, v_fresh
              FROM unnest(v_conflict) WITH ORDINALITY c(col, ord);
        ELSE
            v_returning := 'true AS fresh';
        END IF;
    END IF;

    -- The submitter is still the very role that submitted, not one created
    -- again under its name (pgjobs._submitter_identity_problem: identity
    -- only; the job-wide grants were checked when the import started,
    -- pgjobs.import_prepare), and may still write every column this
    -- statement writes (column-level grants count; a grant revoked since
    -- the submit stops the job here, before the batch goes in): 42501
    -- naming the column. Those per-column checks cover the job-wide ones
    -- (the scope column is always among the columns written).
    -- By the name it goes by now (pgjobs._submitter_name: renamed since the
    -- submit, it is still the submitter). A job without an oid is no role's
    -- (as pgjobs._submitter_problem asks: oid 0, which no role has).
    v_role := pgjobs._submitter_name(p_job.submitted_by, p_job.submitted_by_oid);
    v_problem := pgjobs._submitter_identity_problem(v_role, coalesce(p_job.submitted_by_oid, 0));
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message USING ERRCODE = '42501', HINT = v_problem.hint;
    END IF;
    PERFORM pgjobs._require_role(v_role, p_reg.target, 'INSERT', v_columns);
    IF cardinality(v_updated) > 0 THEN
        PERFORM pgjobs._require_role(v_role, p_reg.target, 'UPDATE', v_updated);
        -- DO UPDATE reads the conflict columns, the scope its WHERE compares
        -- and a document it merges into: SELECT on them, as PostgreSQL asks.
        PERFORM pgjobs._require_role(v_role, p_reg.target, 'SELECT',
            v_conflict || p_reg.scope_column::text
            || CASE WHEN p_reg.document_column::text = ANY (v_updated) AND v_doc_base IS NULL
                    THEN ARRAY[p_reg.document_column::text] ELSE '{}'::text[] END);
    END IF;

    -- Every row written must still be in the job's scope: a BEFORE trigger
    -- that computes the scope from a column of the source would otherwise
    -- put it in another tenant (pgjobs._refuse_scope_move, 22023: the
    -- record is rejected). Evaluated for every row returned, called only
    -- for such a row.
    v_moved := format('CASE WHEN t.%I IS DISTINCT FROM %s THEN '
                      'pgjobs._refuse_scope_move(%L::regclass, %L, t.%I::text) END',
                      p_reg.scope_column, v_scope_lit, p_reg.target::text, p_job.scope,
                      p_reg.scope_column);
    -- A JSONL record's line is parsed once (OFFSET 0 keeps the subquery
    -- from being flattened into each value, where every mention of x.j
    -- parsed the whole line again: a table of 9 array and composite
    -- columns read twice as fast, bench/import.py --shape nested), as json
    -- too only where a value is read from its text.
    v_line := CASE WHEN v_csv THEN ''
                   ELSE format(' CROSS JOIN LATERAL (SELECT s.r::jsonb AS j%s OFFSET 0) x',
                               CASE WHEN v_any_exact THEN ', s.r::json AS t' ELSE '' END) END;
    IF cardinality(v_updates) = 0 THEN
        -- Every row written is a row inserted: a plain INSERT ... SELECT
        -- (the caller reads its row count; what it returns is discarded).
        RETURN format(
            'INSERT INTO %s AS t (%s)%s SELECT %s FROM pg_temp.pgjobs_import_stage s%s '
            'WHERE ($1 IS NULL OR s.n = ANY ($1)) ORDER BY s.n%s RETURNING %s',
            p_reg.target,
            (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_columns) c),
            CASE WHEN v_identity THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END,
            array_to_string(v_values, ', '),
            v_line,
            v_action, v_moved);
    END IF;
    RETURN format(
        'WITH w AS (INSERT INTO %s AS t (%s)%s SELECT %s FROM pg_temp.pgjobs_import_stage s%s '
        'WHERE ($1 IS NULL OR s.n = ANY ($1)) ORDER BY s.n%s RETURNING %s, %s AS pgjobs_moved) '
        'SELECT count(*) FILTER (WHERE %s AND pgjobs_moved IS NULL), '
        'count(*) FILTER (WHERE NOT %s AND pgjobs_moved IS NULL) FROM w',
        p_reg.target,
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_columns) c),
        CASE WHEN v_identity THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END,
        array_to_string(v_values, ', '),
        v_line,
        v_action, v_returning, v_moved, v_fresh, v_fresh);
END
$$;

CREATE OR REPLACE FUNCTION pgjobs._import_insert_sql(
    p_job pgjobs.jobs,
    p_reg pgjobs.target_registry,
    p_fields text[])
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The statement with guarded columns read through their guard (the one
-- pgjobs.import_batch narrows a failed batch down with, and
-- pgjobs.import_prepare checks a CSV header with). Locks nothing.
SELECT pgjobs._import_insert_sql(p_job, p_reg, p_fields, true)
$$;
