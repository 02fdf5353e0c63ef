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
-- concurrent registrations of one table), the registry row FOR NO KEY
-- UPDATE, then, when the columns change, FOR UPDATE (submits hold it FOR
-- KEY SHARE: pgjobs._insert_job_row) and the rows
-- of its failed and canceled jobs (pgjobs._mark_registration_changed);
-- with tune_autovacuum, the ALTER TABLE lock (SHARE UPDATE EXCLUSIVE) on
-- the table.
DECLARE
    v_relkind    "char";
    v_key_type   oid;
    v_scope_type oid;
    v_options    jsonb;
    v_opt        record;
    v_usable     boolean;
    v_fix        text;
    v_part       regclass;
    v_problem    record;
    v_old        pgjobs.target_registry;
    v_jobs       bigint[];
    v_valid_options constant text :=
        'valid options: tune_autovacuum (boolean, default true), created_at_time_zone (a time '
        'zone name such as "UTC" or "Europe/Paris", default "UTC": how a timestamp without '
        'time zone created_at is read), ignore_row_security (boolean, default false)';
BEGIN
    IF p_target IS NULL THEN
        RAISE EXCEPTION 'target must not be NULL' USING ERRCODE = '22023',
                  HINT = 'Pass a table, e.g. ''public.user_table_rows''.';
    END IF;

    -- Registrations (and unregister_target) of one table, one at a time.
    -- Not the lock submits take (below): a registration that keeps the
    -- columns does not wait for them.
    -- Any role may hold that key (pgjobs._advisory_xact_lock): a bounded wait.
    PERFORM pgjobs._advisory_xact_lock(
        pg_catalog.hashtext('pgjobs.register:' || p_target::oid::text),
        format('registrations of %s', p_target));

    SELECT c.relkind INTO v_relkind FROM pg_catalog.pg_class c WHERE c.oid = p_target;
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

    -- Each named column: exists, and has a type that fits its role (the
    -- rule pgjobs._target asks again at every use, as the table is then).
    SELECT p.message, p.hint, p.errcode, p.key_type, p.scope_type
      INTO v_problem
      FROM pgjobs._registration_problem(p_target, p_key, p_scope, p_created_at, p_document) p;
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message
            USING ERRCODE = v_problem.errcode, HINT = v_problem.hint;
    END IF;
    v_key_type := v_problem.key_type;
    v_scope_type := v_problem.scope_type;

    -- One table of a partition or inheritance tree is registered, not two
    -- that hold the same rows (pgjobs._registered_relative says why).
    SELECT p.message, p.hint, p.errcode INTO v_problem
      FROM pgjobs._relative_problem(p_target) p;
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message
            USING ERRCODE = v_problem.errcode, HINT = v_problem.hint;
    END IF;

    -- A job is compiled against the registration it was submitted under:
    -- its predicate names the scope column, its cursor and exclusions are
    -- keys of the key column. Run under other columns, a delete of one
    -- tenant would report success with most of its rows left, and its
    -- exclusions would spare other rows than the client listed. So the
    -- columns do not change under a queued, running or paused job (55006,
    -- as pgjobs.unregister_target), and a failed or canceled job of the
    -- old columns is marked so that it is never retried under the new ones
    -- (pgjobs._require_requeue).
    -- A submit holds the registration's row FOR KEY SHARE from its last
    -- look at the registration to its commit (pgjobs._insert_job_row):
    -- taken FOR UPDATE, it waits for the submits in flight, whose jobs the
    -- check below then sees, and holds new ones back until this commits.
    -- Only when the columns change: a change of options alone (FOR NO KEY
    -- UPDATE, which a key share does not block) leaves the jobs as they
    -- were compiled, and need not wait for a client's transaction that
    -- submitted. A table new to the registry has no submits to wait for.
    SELECT r.* INTO v_old FROM pgjobs.target_registry r WHERE r.target = p_target
       FOR NO KEY UPDATE;
    IF FOUND AND (v_old.key_column, v_old.scope_column, v_old.created_at_column,
                  v_old.document_column)
                 IS DISTINCT FROM (p_key, p_scope, p_created_at, p_document) THEN
        PERFORM 1 FROM pgjobs.target_registry r WHERE r.target = p_target FOR UPDATE;
    END IF;
    IF v_old.target IS NOT NULL AND (v_old.key_column, v_old.scope_column,
                                     v_old.created_at_column, v_old.document_column)
                 IS DISTINCT FROM (p_key, p_scope, p_created_at, p_document) THEN
        -- Marked first: the UPDATE waits for a retry in flight on one of
        -- them, and the check below then sees that job queued.
        PERFORM pgjobs._mark_registration_changed(p_target);
        SELECT array_agg(j.id ORDER BY j.id) INTO v_jobs
          FROM pgjobs.jobs j
         WHERE j.target = p_target AND j.status IN ('queued', 'running', 'paused');
        IF v_jobs IS NOT NULL THEN
            RAISE EXCEPTION 'target % has % queued, running or paused job(s): its key, scope, '
                            'created_at and document columns cannot change under them',
                            p_target, pg_catalog.cardinality(v_jobs)
                USING ERRCODE = '55006',
                      HINT = format('Let them finish, or cancel them (SELECT pgjobs.cancel(id) '
                                    'FROM pgjobs.jobs WHERE id = ANY (%L)) and wait for running '
                                    'ones to stop; then register it again, and submit the '
                                    'canceled ones again: a job canceled or failed under the '
                                    'old columns is not retried under the new ones.',
                                    v_jobs::text);
        END IF;
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

    -- The engine reads the table with its own grants (pgjobs' owner, not
    -- the caller): without SELECT every job and read of it would fail at
    -- its first page with a bare "permission denied". The privilege a
    -- kind writes with is asked at its submit (pgjobs._insert_job_row), so
    -- a table only ever exported needs no DELETE granted (42501).
    SELECT p.message, p.hint INTO v_problem
      FROM pgjobs._engine_grant_problem(p_target, NULL, '{}',
               array_remove(ARRAY[p_key, p_scope, p_created_at, p_document]::text[], NULL)) p;
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message USING ERRCODE = '42501', HINT = v_problem.hint;
    END IF;

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
            BEGIN
                EXECUTE format('ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.02, '
                               'autovacuum_analyze_scale_factor = 0.02)', v_part);
            EXCEPTION WHEN insufficient_privilege THEN
                -- a caller whose role the owner is a member of (operations.md,
                -- "Which role should own and run pgjobs") may register, not ALTER
                RAISE EXCEPTION 'option "tune_autovacuum" sets the storage parameters of table '
                                '%, which only its owner may change', v_part
                    USING ERRCODE = '42501',
                    HINT = format('Register the table as its owner, or pass '
                                  '{"tune_autovacuum": false} and have the owner run ALTER '
                                  'TABLE %s SET (autovacuum_vacuum_scale_factor = 0.02, '
                                  'autovacuum_analyze_scale_factor = 0.02);', v_part);
            END;
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
'registering it, and (42501, the GRANT in the HINT) a table the role pgjobs runs as (the '
'owner of its functions) may not SELECT. Refuses (22023) a partition or inheritance child of a '
'registered table, or a parent of one: one table of a tree is registered. Refuses (55006) to change the key, scope, created_at or document column '
'while a job of the table is queued, running or paused; its failed and canceled jobs can no '
'longer be retried after such a change.';
