CREATE OR REPLACE FUNCTION pgjobs._submit_import_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_source text,
    p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.submit_import, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.submit_import, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Validates, before anything is written, in this order: the target
-- (registered, trusted), INSERT on it (UPDATE too for on_duplicate update;
-- 42501), a scope column the import can write (22023:
-- pgjobs._import_scope_writable), the source URI's scheme, the scope and every option (22023; for
-- on_duplicate skip / update a unique index pgjobs can name in ON
-- CONFLICT: 55000 with the CREATE UNIQUE INDEX statement), and only then
-- the source's place under a prefix of the storage allow-list (42501; a
-- bad option is named, not the allow-list: h81) and that it names a file.
-- The scope is checked against pgjobs.allowed_scopes by pgjobs._insert_job,
-- which applies the gate.
-- Import options (besides the common ones):
--   format        "csv" (header row) | "jsonl"; default "jsonl" when the
--                 name ends in .jsonl or .ndjson (before any .gz), else "csv"
--   gzip          boolean; default true when the name ends in .gz
--   on_duplicate  "error" (default) | "skip" | "update", on (scope, key)
--   max_rejects   integer 0..1000000, default 0; for a caller who is not
--                 an administrator at most set_defaults' max_rejects_per_job
--                 (else 1000; 22023 above it); the bytes its rejects keep are
--                 held to max_reject_bytes_per_job as it runs
--                 (pgjobs.import_batch)
--   batch_ms      target time of one batch in milliseconds, 50..60000,
--                 default 1000
--   allow_unknown_fields  boolean, default false: import a source field
--                 named like a column in another case ("Name"), starting
--                 with the document column ("data.x") or like a document
--                 field of the scope's rows from before the job ("Status"
--                 for status, "NEST.a" for nest.a) as a document field
--                 (refused otherwise when a batch first maps the field:
--                 pgjobs._import_insert_sql)
--   replace_non_objects  boolean, default false: with on_duplicate "update",
--                 a record whose document fields merge an object where the
--                 existing row's document holds a string, number, boolean
--                 or array replaces that value; rejected otherwise
--                 (pgjobs._import_doc_merge)
-- Locks nothing beyond the inserted row (and the gate's advisory lock).
DECLARE
    v_reg pgjobs.target_registry;
    v_options jsonb := p_options;  -- NULL is refused below, as every submit does
    v_source text;
    v_name text;
    v_format text;
    v_gzip boolean;
    v_on_duplicate text := 'error';
    v_max_rejects integer := 0;
    v_batch_ms integer := 1000;
    v_conflict text[];
    v_scope text;
    v_job pgjobs.jobs;
    -- The options of an import beyond those every job takes.
    v_keys constant text[] := ARRAY['format', 'gzip', 'on_duplicate', 'max_rejects', 'batch_ms',
                                    'allow_unknown_fields', 'replace_non_objects'];
BEGIN
    p_caller := pgjobs._enter('submit_import', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- What the call needs on some column, from the options alone, before the
    -- registry is read (pgjobs._require_entry); the columns are checked below.
    PERFORM pgjobs._require_entry(p_target,
        CASE WHEN jsonb_typeof(p_options) = 'object' AND p_options ->> 'on_duplicate' = 'update'
             THEN 'INSERT, UPDATE, SELECT' ELSE 'INSERT' END);
    v_reg := pgjobs._target(p_target);
    -- The columns the job is compiled against, which it records
    -- (pgjobs._insert_job_row compares them).
    PERFORM pgjobs._compiling_against(p_target);
    -- INSERT on the scope column (which every import writes); the other
    -- columns are known once the source is read: the worker checks each
    -- batch's (pgjobs._import_insert_sql). Column-level grants count.
    PERFORM pgjobs._require_role(pgjobs._caller(), p_target, 'INSERT',
                                 ARRAY[v_reg.scope_column::text]);
    -- ... and a scope column that takes a value (not generated, not a
    -- GENERATED ALWAYS identity): the table's shape decides it, so here,
    -- not record by record at run time.
    PERFORM pgjobs._import_scope_writable(v_reg);
    IF jsonb_typeof(v_options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for the defaults.';
    END IF;

    IF v_options ? 'on_duplicate' THEN
        IF v_options -> 'on_duplicate' NOT IN ('"error"'::jsonb, '"skip"'::jsonb,
                                                '"update"'::jsonb) THEN
            RAISE EXCEPTION 'option "on_duplicate" must be "error", "skip" or "update", not %',
                            v_options -> 'on_duplicate'
                USING ERRCODE = '22023',
                HINT = '"error" rejects a record whose (scope, key) exists, "skip" keeps the '
                       'existing row, "update" overwrites the columns the source gives.';
        END IF;
        v_on_duplicate := v_options ->> 'on_duplicate';
    END IF;
    IF v_on_duplicate = 'update' THEN
        PERFORM pgjobs._require_role(pgjobs._caller(), p_target, 'UPDATE', '{}'::text[]);
    END IF;

    IF p_source IS NULL OR p_source !~* '^(file|s3|gs|az|https|memory)://' THEN
        RAISE EXCEPTION 'source must be a URI with scheme file, s3, gs, az or https, not %',
                        coalesce(quote_literal(left(p_source, 200)), 'NULL')
            USING ERRCODE = '22023',
            HINT = 'For example ''s3://bucket/imports/rows.csv'' or '
                   '''file:///var/imports/rows.csv.gz''.';
    END IF;
    -- Clients choose what the worker reads only within what an administrator
    -- allowed (docs/imports.md): a worker never reads an arbitrary server
    -- file or URL for them. The normal form is stored and used.
    v_source := pgjobs._normalize_uri(p_source, '42501');
    -- The scope, canonical (22023 for one that is not a value of the scope
    -- column): checked before the allow-list below, which a per-tenant
    -- prefix makes depend on it.
    v_scope := pgjobs._canonical_scope(v_reg, p_scope);
    v_name := lower(regexp_replace(v_source, '^.*/', ''));

    v_gzip := v_name ~ '\.gz$';
    IF v_options ? 'gzip' THEN
        v_gzip := pgjobs._option_bool('gzip', v_options -> 'gzip');
    END IF;

    v_format := CASE WHEN v_name ~ '\.(jsonl|ndjson)(\.gz)?$' THEN 'jsonl' ELSE 'csv' END;
    IF v_options ? 'format' THEN
        IF v_options -> 'format' NOT IN ('"csv"'::jsonb, '"jsonl"'::jsonb) THEN
            RAISE EXCEPTION 'option "format" must be "csv" or "jsonl", not %',
                            v_options -> 'format'
                USING ERRCODE = '22023',
                HINT = '"csv": a header row naming columns or document fields, then one record '
                       'per row; "jsonl": one JSON object per line.';
        END IF;
        v_format := v_options ->> 'format';
    END IF;

    IF v_options ? 'max_rejects' THEN
        v_max_rejects := pgjobs._option_int('max_rejects', v_options -> 'max_rejects',
                                            0, 1000000);
    END IF;
    -- Each reject is a row of pgjobs.import_rejects (its record up to 65,536
    -- characters) kept until the job is pruned: the administrator's ceiling
    -- (set_defaults' max_rejects_per_job, else 1000) bounds a client's job
    -- to about 64 MiB of them, as max_item_bytes_per_job bounds its items.
    IF v_max_rejects > coalesce((pgjobs._defaults() ->> 'max_rejects_per_job')::integer, 1000)
       AND NOT pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'option "max_rejects" is %, above the ceiling of % an administrator '
                        'set for clients', v_max_rejects,
                        coalesce((pgjobs._defaults() ->> 'max_rejects_per_job')::integer, 1000)
            USING ERRCODE = '22023',
            HINT = format('Submit with {"max_rejects": %s} or lower; an administrator may '
                          'submit above it, or raise the ceiling with '
                          'pgjobs.set_defaults(''{"max_rejects_per_job": N}'').',
                          coalesce((pgjobs._defaults() ->> 'max_rejects_per_job')::integer,
                                   1000));
    END IF;
    IF v_options ? 'batch_ms' THEN
        v_batch_ms := pgjobs._option_int('batch_ms', v_options -> 'batch_ms', 50, 60000);
    END IF;
    PERFORM pgjobs._option_bool('allow_unknown_fields', v_options -> 'allow_unknown_fields');
    PERFORM pgjobs._option_bool('replace_non_objects', v_options -> 'replace_non_objects');

    v_conflict := pgjobs._import_conflict_columns(v_reg);
    IF v_on_duplicate <> 'error' AND v_conflict IS NULL THEN
        RAISE EXCEPTION '%', format('on_duplicate "%s" needs a unique index on (%s, %s) of %s%s',
                        v_on_duplicate, v_reg.scope_column, v_reg.key_column, p_target,
                        -- (One that is DEFERRABLE cannot be ON CONFLICT's arbiter.)
                        CASE WHEN EXISTS (
                                SELECT FROM pg_catalog.pg_index i
                                 WHERE i.indrelid = p_target AND i.indisunique
                                   AND NOT i.indimmediate)
                             THEN ' that is not DEFERRABLE (ON CONFLICT cannot use a deferrable '
                                  'unique constraint)' ELSE '' END)
            USING ERRCODE = '55000',
            HINT = pgjobs._unique_key_hint(v_reg);
    END IF;
    -- ON CONFLICT DO UPDATE reads the existing row (its conflict columns, the
    -- scope its WHERE compares): PostgreSQL asks SELECT on them of a role
    -- running it, and the job's updated count would otherwise tell the caller
    -- which keys exist. pgjobs asks the same (again at run time).
    IF v_on_duplicate = 'update' THEN
        PERFORM pgjobs._require_role(pgjobs._caller(), p_target, 'SELECT',
                                     v_conflict || v_reg.scope_column::text);
    END IF;

    -- The options every job takes (priority, run_at, ..., the throttling
    -- ones; any unknown one): checked again as the job is written.
    PERFORM pgjobs._job_options('import', v_options, v_keys);

    -- The source's allow-list, once every option and the scope passed: a
    -- submit with a bad option (or scope) named it, not the allow-list, as
    -- every submit does (pgjobs._submit_export_as's destination alike; h81).
    -- A per-tenant prefix allows the folder of the job's scope (canonical
    -- text).
    IF NOT pgjobs._storage_allowed_for(v_source, v_scope) THEN
        RAISE EXCEPTION 'source % is not under an allowed storage prefix',
                        quote_literal(v_source)
            USING ERRCODE = '42501',
            -- the source's own folder, in a call allow_storage accepts
            HINT = pgjobs._storage_allow_hint(v_source, true)
                   || pgjobs._storage_scope_hint(v_scope);
    END IF;
    -- One object, never a folder: a source that ends with a slash, or names a
    -- bucket (a container) and no object in it, was accepted and failed at its
    -- worker's first read ("not a regular file"), known here. An https URL may
    -- serve a file at any path, one ending with a slash too. After the
    -- allow-list: a folder outside it is refused as any source there (42501).
    IF p_source !~* '^https://'
       AND (right(p_source, 1) = '/' OR p_source ~* '^(s3|gs|az)://[^/]*$') THEN
        RAISE EXCEPTION 'source % names a folder, not a file',
                        quote_literal(left(p_source, 200))
            USING ERRCODE = '22023',
            HINT = 'An import reads one CSV or JSONL file (gzipped or not): name it, e.g. '
                   '''s3://bucket/imports/rows.csv''; import each file of a folder as a '
                   'job of its own.';
    END IF;
    v_job := pgjobs._insert_job('import', p_target, p_scope,
        jsonb_build_object('source', v_source,
                           'format', v_format,
                           'gzip', v_gzip,
                           'on_duplicate', v_on_duplicate,
                           'max_rejects', v_max_rejects,
                           'batch_ms', v_batch_ms),
        v_options,
        v_keys,
        NULL, NULL, v_reg);
    RETURN pgjobs._leave(v_job.id);
END
$$;
