CREATE OR REPLACE FUNCTION pgjobs.register_target(
    p_target     regclass,
    p_key        name,
    p_scope      name,
    p_created_at name,
    p_document   name DEFAULT NULL,
    p_options    jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Register (or re-register: upsert) a table as a pgjobs target.
-- Validates the columns and their types, requires a valid btree index leading
-- with (scope, key) (55000 with the CREATE INDEX statement in the HINT), then
-- applies options. Locks: a per-target advisory xact lock (serialises
-- concurrent registrations of one table) and, with tune_autovacuum, the
-- ALTER TABLE lock (SHARE UPDATE EXCLUSIVE) on the table.
DECLARE
    v_relkind    "char";
    v_nsp        name;
    v_rel        name;
    v_all_cols   text;
    v_role       text;
    v_col        name;
    v_attnum     smallint;
    v_type       oid;
    v_base       oid;
    v_typtype    "char";
    v_key_type   oid;
    v_scope_type oid;
    v_options    jsonb;
    v_opt        record;
    v_usable     boolean;
    v_fix        text;
    v_part       regclass;
    v_valid_options constant text :=
        'valid options: tune_autovacuum (boolean, default true), created_at_time_zone (a time '
        'zone name such as "UTC" or "Europe/Paris", default "UTC": how a timestamp without '
        'time zone created_at is read), ignore_row_security (boolean, default false)';
BEGIN
    IF p_target IS NULL THEN
        RAISE EXCEPTION 'target must not be NULL' USING ERRCODE = '22023',
                  HINT = 'Pass a table, e.g. ''public.user_table_rows''.';
    END IF;

    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtext('pgjobs.target:' || p_target::oid::text));

    SELECT c.relkind, n.nspname, c.relname INTO v_relkind, v_nsp, v_rel
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', p_target::oid
            USING ERRCODE = '42P01',
                  HINT = 'Check the table name; the table may have been dropped.';
    END IF;
    IF v_relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', p_target
            USING ERRCODE = '22023',
                  HINT = 'Only ordinary and partitioned tables can be pgjobs targets.';
    END IF;

    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO v_all_cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped;

    -- Each named column: exists, and has a type that fits its role.
    FOREACH v_role IN ARRAY ARRAY['key', 'scope', 'created_at', 'document'] LOOP
        v_col := CASE v_role WHEN 'key' THEN p_key WHEN 'scope' THEN p_scope
                             WHEN 'created_at' THEN p_created_at ELSE p_document END;
        IF v_col IS NULL THEN
            CONTINUE WHEN v_role = 'document';
            RAISE EXCEPTION 'the % column must not be NULL', v_role
                USING ERRCODE = '22023', HINT = format('Columns of %s: %s.', p_target, v_all_cols);
        END IF;

        SELECT a.attnum, a.atttypid INTO v_attnum, v_type
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_target AND a.attname = v_col AND a.attnum > 0
           AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" (the % column) does not exist in table %',
                            v_col, v_role, p_target
                USING ERRCODE = '22023', HINT = format('Columns of %s: %s.', p_target, v_all_cols);
        END IF;

        -- Domains are judged by their base type.
        v_base := v_type;
        LOOP
            SELECT t.typtype, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
              INTO v_typtype, v_base
              FROM pg_catalog.pg_type t WHERE t.oid = v_base;
            EXIT WHEN v_typtype <> 'd';
        END LOOP;

        IF v_role IN ('key', 'scope') AND pgjobs._foreign_comparisons(v_type) THEN
            RAISE EXCEPTION 'column "%" of type % cannot be the % of %: its comparison '
                            'operators are not in pg_catalog', v_col, format_type(v_type, NULL),
                            v_role, p_target
                USING ERRCODE = '22023',
                      HINT = 'pgjobs compares with pg_catalog''s operators only (an extension '
                             'type such as citext would compare as text). Key or scope by a '
                             'column of a built-in type, e.g. a generated column '
                             '(lower(name)::text) with its own index.';
        END IF;
        -- Keys and scopes are stored and compared as text (cursors, scope
        -- literals), printed under settings every pgjobs routine pins; money
        -- prints and parses under lc_monetary, a locale a runner or client
        -- may differ in: a cursor printed by one runner might not read back
        -- in another, and a tenant would have no one spelling.
        IF v_role IN ('key', 'scope') AND v_base = 'money'::regtype THEN
            RAISE EXCEPTION 'column "%" of type % cannot be the % of %: its text depends '
                            'on lc_monetary', v_col, format_type(v_type, NULL), v_role, p_target
                USING ERRCODE = '22023',
                      HINT = 'money reads and prints by the session''s lc_monetary, so a key '
                             'or a tenant would have no one spelling: key or scope by a '
                             'numeric, integer or text column (e.g. bigint cents).';
        END IF;
        IF v_role = 'key' THEN
            -- The keyset walk needs a total order that a btree can serve.
            IF v_base IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype)
               OR v_typtype = 'p'
               OR NOT EXISTS (
                    SELECT 1 FROM pg_catalog.pg_opclass oc
                     WHERE oc.opcmethod = (SELECT am.oid FROM pg_catalog.pg_am am
                                            WHERE am.amname = 'btree')
                       AND oc.opcdefault
                       AND (oc.opcintype = v_base
                            OR (v_typtype = 'e' AND oc.opcintype = 'anyenum'::regtype)
                            OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast pc
                                        WHERE pc.castsource = v_base
                                          AND pc.casttarget = oc.opcintype
                                          AND pc.castmethod = 'b'))) THEN
                RAISE EXCEPTION 'column "%" of type % cannot be the key of %',
                                v_col, format_type(v_type, NULL), p_target
                    USING ERRCODE = '22023',
                          HINT = 'The key must be unique within a scope and totally ordered by '
                                 'a btree: e.g. bigint, integer, text, uuid, timestamptz.';
            END IF;
            -- A NULL key is out of reach of the keyset walk: its row would
            -- survive a delete reported as succeeded.
            IF NOT (SELECT a.attnotnull FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = p_target AND a.attnum = v_attnum) THEN
                RAISE EXCEPTION 'key column "%" of % allows NULL', v_col, p_target
                    USING ERRCODE = '55000',
                          HINT = format('ALTER TABLE %I.%I ALTER COLUMN %I SET NOT NULL;',
                                        v_nsp, v_rel, v_col);
            END IF;
            v_key_type := v_type;
        ELSIF v_role = 'scope' THEN
            -- A scope is one tenant whatever its spelling: pgjobs stores and
            -- compares it as canonical text (pgjobs._canonical_scope). That
            -- needs values that are equal only when they are the same value
            -- (the btree "equalimage" property, as deduplication needs), or
            -- a type pgjobs._canonical_text brings to one form (numeric,
            -- floats, interval); and a deterministic collation.
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                         JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                        WHERE a.attrelid = p_target AND a.attnum = v_attnum
                          AND NOT co.collisdeterministic) THEN
                RAISE EXCEPTION 'scope column "%" of % has a nondeterministic collation',
                                v_col, p_target
                    USING ERRCODE = '22023',
                          HINT = 'Values such a collation calls equal are different texts, so a '
                                 'scope would have no one spelling: give the column a '
                                 'deterministic collation (COLLATE "C"), or scope by a generated '
                                 'column, e.g. scope_key text GENERATED ALWAYS AS (lower(scope)) '
                                 'STORED.';
            END IF;
            IF v_base NOT IN ('numeric'::regtype, 'real'::regtype, 'double precision'::regtype,
                              'interval'::regtype)
               AND NOT EXISTS (
                    SELECT 1 FROM pg_catalog.pg_opclass oc
                      JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily
                                                  AND ap.amproclefttype = oc.opcintype
                                                  AND ap.amprocrighttype = oc.opcintype
                                                  AND ap.amprocnum = 4
                     WHERE oc.opcmethod = (SELECT am.oid FROM pg_catalog.pg_am am
                                            WHERE am.amname = 'btree')
                       AND oc.opcdefault
                       AND (oc.opcintype = v_base
                            OR (v_typtype = 'e' AND oc.opcintype = 'anyenum'::regtype)
                            OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast pc
                                        WHERE pc.castsource = v_base
                                          AND pc.casttarget = oc.opcintype
                                          AND pc.castmethod = 'b'))) THEN
                RAISE EXCEPTION 'column "%" of type % cannot be the scope of %',
                                v_col, format_type(v_type, NULL), p_target
                    USING ERRCODE = '22023',
                          HINT = 'A scope needs a type whose equal values are the same value, so '
                                 'that each tenant has one spelling: e.g. bigint, integer, text, '
                                 'uuid, date, numeric.';
            END IF;
            v_scope_type := v_type;
        ELSIF v_role = 'created_at' THEN
            IF v_base NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
                RAISE EXCEPTION 'column "%" of type % cannot be the created_at column of %',
                                v_col, format_type(v_type, NULL), p_target
                    USING ERRCODE = '22023',
                          HINT = 'created_at must be timestamptz (or timestamp).';
            END IF;
        ELSE
            IF v_base <> 'jsonb'::regtype THEN
                RAISE EXCEPTION 'column "%" of type % cannot be the document column of %',
                                v_col, format_type(v_type, NULL), p_target
                    USING ERRCODE = '22023',
                          HINT = 'The document column must be jsonb; pass p_document => NULL '
                                 'when the table has none.';
            END IF;
        END IF;
    END LOOP;

    IF p_key = p_scope THEN
        RAISE EXCEPTION 'the key and scope columns must differ (both are "%")', p_key
            USING ERRCODE = '22023',
                  HINT = 'The scope column partitions the table (e.g. table_id); the key orders rows within a scope (e.g. id).';
    END IF;

    -- Options: known keys with the right types only; stored with defaults.
    IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object, got %', coalesce(p_options::text, 'NULL')
            USING ERRCODE = '22023', HINT = v_valid_options;
    END IF;
    FOR v_opt IN SELECT e.key, e.value FROM jsonb_each(p_options) e LOOP
        CASE v_opt.key
        WHEN 'tune_autovacuum' THEN
            IF jsonb_typeof(v_opt.value) <> 'boolean' THEN
                RAISE EXCEPTION 'option "%" must be a boolean, got %', v_opt.key, v_opt.value
                    USING ERRCODE = '22023', HINT = v_valid_options;
            END IF;
        WHEN 'created_at_time_zone' THEN
            -- A `timestamp` created_at holds wall-clock time of some zone; the
            -- cutoff must be written in that zone, not the submitter's.
            IF jsonb_typeof(v_opt.value) <> 'string'
               OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names z
                               WHERE z.name = v_opt.value #>> '{}')
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs z
                                   WHERE z.abbrev = v_opt.value #>> '{}') THEN
                RAISE EXCEPTION 'option "created_at_time_zone" must be a time zone name, got %',
                                v_opt.value
                    USING ERRCODE = '22023',
                    HINT = 'For example "UTC" or "Europe/Paris" (SELECT name FROM '
                           'pg_timezone_names lists them).';
            END IF;
        WHEN 'ignore_row_security' THEN
            IF jsonb_typeof(v_opt.value) <> 'boolean' THEN
                RAISE EXCEPTION 'option "%" must be a boolean, got %', v_opt.key, v_opt.value
                    USING ERRCODE = '22023', HINT = v_valid_options;
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown option "%"', v_opt.key
                USING ERRCODE = '22023', HINT = v_valid_options;
        END CASE;
    END LOOP;
    v_options := '{"tune_autovacuum": true, "created_at_time_zone": "UTC"}'::jsonb || p_options;  -- ignore_row_security: absent is false

    -- The keyset walk needs a valid, non-partial btree index leading with
    -- (scope, key) (on a partitioned table: a partitioned index, so every
    -- partition has one): pgjobs._key_index, the test doctor reports too.
    SELECT k.usable, k.fix INTO v_usable, v_fix
      FROM pgjobs._key_index(p_target, p_scope, p_key) k;
    IF NOT v_usable THEN
        RAISE EXCEPTION 'table % has no valid btree index leading with (%, %)', p_target,
                        p_scope, p_key
            USING ERRCODE = '55000', HINT = v_fix;
    END IF;

    -- Refuse a table whose code (triggers, domain checks, defaults...) would
    -- run with rights its authors lack (42501; pgjobs._require_trusted).
    PERFORM pgjobs._require_trusted(p_target);

    -- A mass delete in one tenant should not leave dead tuples that slow
    -- every tenant's scans until the default 20% threshold is reached.
    -- Partitioned parents take no storage parameters: tune the leaves.
    IF (v_options ->> 'tune_autovacuum')::boolean THEN
        FOR v_part IN
            SELECT p_target WHERE v_relkind = 'r'
            UNION ALL
            SELECT t.relid FROM pg_catalog.pg_partition_tree(p_target) t
             WHERE v_relkind = 'p' AND t.isleaf
               AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.relid) = 'r'
        LOOP
            EXECUTE format('ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.02, '
                           'autovacuum_analyze_scale_factor = 0.02)', v_part);
        END LOOP;
    END IF;

    INSERT INTO pgjobs.target_registry AS r
           (target, key_column, scope_column, created_at_column, document_column,
            key_type, scope_type, options)
    VALUES (p_target, p_key, p_scope, p_created_at, p_document,
            v_key_type, v_scope_type, v_options)
    ON CONFLICT (target) DO UPDATE
       SET key_column        = excluded.key_column,
           scope_column      = excluded.scope_column,
           created_at_column = excluded.created_at_column,
           document_column   = excluded.document_column,
           key_type          = excluded.key_type,
           scope_type        = excluded.scope_type,
           options           = excluded.options,
           updated_at        = now();
END
$function$;

COMMENT ON FUNCTION pgjobs.register_target(regclass, name, name, name, name, jsonb) IS
'Register (or update the registration of) a table as a pgjobs target: p_key is the keyset walk '
'column (unique within a scope, totally ordered, NOT NULL), p_scope partitions the table into tenants, '
'p_created_at is the cutoff column, p_document an optional jsonb column holding filter fields. '
'Requires a btree index leading with (scope, key): raises 55000 with the CREATE INDEX statement '
'in the HINT. Options: tune_autovacuum (boolean, default true) sets the table''s autovacuum '
'scale factors to 2%; created_at_time_zone (default UTC) is the zone whose wall-clock time a '
'timestamp-without-time-zone created_at column holds; ignore_row_security (boolean, default '
'false) lets clients that a row-level security policy on the table would confine use pgjobs '
'on it anyway (they are refused with 42501 otherwise). Refuses (42501) a table whose code '
'(triggers, column types, defaults...) belongs to a role without the rights of the role '
'registering it.';
