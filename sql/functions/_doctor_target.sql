CREATE OR REPLACE FUNCTION pgjobs._doctor_target(p_reg pgjobs.target_registry)
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's checks of one registered target: table exists, columns
-- exist, trusted, the engine's grants, (scope, key) btree, btree_gin (scope, document) index,
-- autovacuum scale factor, dead tuples. Stops after a missing table or
-- column (the rest cannot be judged). Read-only.
DECLARE
    v_relkind     "char";
    v_nsp         name;
    v_rel         name;
    v_key_num     smallint;
    v_scope_num   smallint;
    v_doc_num     smallint;
    v_index       text;
    v_usable      boolean;
    v_name        text;
    v_leaves      text[];
    v_factor      float8;
    v_tune_sql    text;
    v_default_sf  float8 := current_setting('autovacuum_vacuum_scale_factor')::float8;
    v_live        bigint;
    v_dead        bigint;
    v_last_vacuum timestamptz;
    v_error       text;
BEGIN
    target := p_reg.target::text;
    SELECT c.relkind, n.nspname, c.relname INTO v_relkind, v_nsp, v_rel
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_reg.target;
    IF NOT FOUND THEN
        check_name := 'target.exists';
        status := 'fail';
        detail := format('the table registered with OID %s no longer exists',
                         p_reg.target::oid);
        fix := format('SELECT pgjobs.unregister_target(%s::regclass);', p_reg.target::oid);
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT max(a.attnum) FILTER (WHERE a.attname = p_reg.key_column),
           max(a.attnum) FILTER (WHERE a.attname = p_reg.scope_column),
           max(a.attnum) FILTER (WHERE a.attname = p_reg.document_column)
      INTO v_key_num, v_scope_num, v_doc_num
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_key_num IS NULL OR v_scope_num IS NULL
       OR (p_reg.document_column IS NOT NULL AND v_doc_num IS NULL) THEN
        check_name := 'target.columns';
        status := 'fail';
        detail := format('a registered column no longer exists (key %I, scope %I, '
                         'document %s)', p_reg.key_column, p_reg.scope_column,
                         coalesce(quote_ident(p_reg.document_column), 'none'));
        fix := format('SELECT pgjobs.register_target(%L, p_key => ..., p_scope => ..., '
                      'p_created_at => %L, p_document => ...);  -- with the current '
                      'column names', target, p_reg.created_at_column);
        RETURN NEXT;
        RETURN;
    END IF;

    -- The registration as the table is now (pgjobs._registration_problem, the
    -- rule pgjobs._target applies at every use): an ALTER TABLE since.
    SELECT p.message, p.hint INTO v_error, fix
      FROM pgjobs._registration_problem(p_reg.target, p_reg.key_column, p_reg.scope_column,
                                        p_reg.created_at_column, p_reg.document_column,
                                        true) p;
    IF v_error IS NOT NULL THEN
        check_name := 'target.registration';
        status := 'fail';
        detail := format('%s (%s: every job and read of it is refused)', v_error,
                         pgjobs._registration_change(p_reg));
        fix := fix || ' Then register it again with pgjobs.register_target.';
        RETURN NEXT;
        RETURN;
    END IF;

    -- Trust: code of the target's owners runs inside pgjobs, as the
    -- owner of its client functions (the runner's role is judged when
    -- it runs: docs/operations.md says to run it as that owner).
    check_name := 'target.trusted';
    fix := NULL;
    SELECT format('role %s (which %s) lacks the rights of role %s, which owns pgjobs'' '
                  'functions', u.role_name, u.reason, a.role_as)
      INTO v_error
      FROM (SELECT p.proowner::regrole::name AS role_as FROM pg_catalog.pg_proc p
             WHERE p.oid = 'pgjobs._visible_as(name, regclass, text, jsonb, text, integer)'
                           ::regprocedure) a
      CROSS JOIN LATERAL pgjobs._untrusted_roles(p_reg.target, a.role_as) u
     LIMIT 1;
    IF v_error IS NULL THEN
        status := 'ok';
        detail := 'every role whose code runs inside pgjobs jobs on this table has the '
                  'rights pgjobs runs with';
    ELSE
        status := 'fail';
        detail := v_error || ': pgjobs refuses this target (42501)';
        fix := 'Run pgjobs as a role with no more rights than the owners of this table, its '
               'triggers, column types and functions (docs/operations.md), or revoke the '
               'TRIGGER or REFERENCES grant / change the owner named here.';
    END IF;
    RETURN NEXT;

    -- The engine's own grants (pgjobs._engine_grant_problem): SELECT, as
    -- register_target required, and the privilege of each kind with a job
    -- queued, running or paused on the table (a REVOKE since: it fails).
    check_name := 'target.grants';
    SELECT g.message, g.hint INTO v_error, fix
      FROM (SELECT NULL::text AS kind, '{}'::jsonb AS payload
            UNION ALL
            SELECT DISTINCT j.kind, jsonb_build_object('on_duplicate',
                                                      j.payload -> 'on_duplicate')
              FROM pgjobs.jobs j
             WHERE j.target = p_reg.target AND j.status IN ('queued', 'running', 'paused')) k
      CROSS JOIN LATERAL pgjobs._engine_grant_problem(
               p_reg.target, k.kind, k.payload,
               array_remove(ARRAY[p_reg.key_column, p_reg.scope_column,
                                  p_reg.created_at_column, p_reg.document_column]::text[],
                            NULL)) g
     WHERE g.message IS NOT NULL
     LIMIT 1;
    IF v_error IS NULL THEN
        status := 'ok';
        detail := format('role %s, which pgjobs runs as, may read the table and run its '
                         'pending jobs', pgjobs._engine_role());
        fix := NULL;
    ELSE
        status := 'warn';
        detail := v_error || ' (a grant revoked since it was registered?)';
    END IF;
    RETURN NEXT;

    -- The (scope, key) btree the keyset walk needs: register_target's
    -- test and fix (pgjobs._key_index).
    check_name := 'target.key_index';
    SELECT k.key_index::text, k.usable, k.fix INTO v_index, v_usable, fix
      FROM pgjobs._key_index(p_reg.target, p_reg.scope_column, p_reg.key_column) k;
    IF v_usable THEN
        status := 'ok';
        detail := format('btree index %s leads with (%I, %I)', v_index,
                         p_reg.scope_column, p_reg.key_column);
    ELSIF v_index IS NOT NULL THEN
        status := 'fail';
        detail := format('btree index %s on (%I, %I) is invalid (a failed CREATE INDEX '
                         'CONCURRENTLY, or a partition without its index?): jobs scan the '
                         'whole table', v_index, p_reg.scope_column, p_reg.key_column);
    ELSE
        status := 'fail';
        detail := format('no valid btree index leads with (%I, %I): every page of a job '
                         'and every masked read scans the table', p_reg.scope_column,
                         p_reg.key_column);
    END IF;
    RETURN NEXT;

    -- Containment filters on the document resolve per scope inside a
    -- btree_gin (scope, document jsonb_path_ops) index.
    IF p_reg.document_column IS NOT NULL THEN
        check_name := 'target.document_index';
        fix := NULL;
        SELECT i.indexrelid::regclass::text INTO v_index
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_catalog.pg_am am ON am.oid = ic.relam
          JOIN pg_catalog.pg_opclass oc ON oc.oid = i.indclass[1]
         WHERE i.indrelid = p_reg.target AND am.amname = 'gin'
           AND i.indisvalid AND i.indisready AND i.indpred IS NULL
           AND i.indnkeyatts >= 2
           AND i.indkey[0] = v_scope_num AND i.indkey[1] = v_doc_num
           AND oc.opcname IN ('jsonb_path_ops', 'jsonb_ops')
         ORDER BY (oc.opcname = 'jsonb_path_ops') DESC, ic.relname
         LIMIT 1;
        IF v_index IS NOT NULL THEN
            status := 'ok';
            detail := format('gin index %s on (%I, %I) serves containment filters',
                             v_index, p_reg.scope_column, p_reg.document_column);
        ELSE
            v_name := pgjobs._free_index_name(p_reg.target, ARRAY[p_reg.scope_column, p_reg.document_column]);
            status := 'warn';
            detail := format('no gin index on (%I, %I): document filters read every row '
                             'of the scope', p_reg.scope_column, p_reg.document_column);
            fix := format('CREATE EXTENSION IF NOT EXISTS btree_gin; '
                          '%s %I ON %I.%I USING gin (%I, %I jsonb_path_ops);',
                          CASE WHEN v_relkind = 'p' THEN 'CREATE INDEX'
                               ELSE 'CREATE INDEX CONCURRENTLY' END,
                          v_name, v_nsp, v_rel, p_reg.scope_column, p_reg.document_column);
        END IF;
        RETURN NEXT;
    END IF;

    -- Autovacuum: one tenant's mass delete must not leave the shared
    -- relation waiting for 20% churn. Partitioned tables: their leaves.
    check_name := 'target.autovacuum';
    fix := NULL;
    SELECT array_agg(t.leaf::text ORDER BY t.leaf::text)
               FILTER (WHERE t.factor > 0.05 OR NOT t.enabled),
           max(t.factor),
           string_agg(concat_ws(' ',
               CASE WHEN t.factor > 0.05 THEN format(
                   'ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.02, '
                   'autovacuum_analyze_scale_factor = 0.02);', t.leaf) END,
               CASE WHEN NOT t.enabled THEN format(
                   'ALTER TABLE %s RESET (autovacuum_enabled);', t.leaf) END), ' '
               ORDER BY t.leaf::text) FILTER (WHERE t.factor > 0.05 OR NOT t.enabled)
      INTO v_leaves, v_factor, v_tune_sql
      FROM (SELECT c.oid::regclass AS leaf,
                   coalesce((SELECT o.option_value::float8
                               FROM pg_catalog.pg_options_to_table(c.reloptions) o
                              WHERE o.option_name = 'autovacuum_vacuum_scale_factor'),
                            v_default_sf) AS factor,
                   coalesce((SELECT o.option_value::boolean
                               FROM pg_catalog.pg_options_to_table(c.reloptions) o
                              WHERE o.option_name = 'autovacuum_enabled'), true) AS enabled
              FROM pg_catalog.pg_class c
             WHERE c.relkind = 'r'
               AND (c.oid = p_reg.target
                    OR (v_relkind = 'p' AND c.oid IN (
                          SELECT pt.relid FROM pg_catalog.pg_partition_tree(p_reg.target) pt
                           WHERE pt.isleaf)))) t;
    IF v_leaves IS NULL THEN
        status := 'ok';
        detail := format('autovacuum_vacuum_scale_factor %s', coalesce(v_factor::text,
                         'n/a (no partitions)'));
    ELSIF p_reg.options ->> 'tune_autovacuum' = 'false' THEN
        status := 'ok';
        detail := format('autovacuum_vacuum_scale_factor up to %s, or autovacuum disabled, '
                         'on %s; not judged: registered with tune_autovacuum off',
                         v_factor, array_to_string(v_leaves, ', '));
    ELSE
        status := 'warn';
        detail := format('autovacuum waits for %s%% of %s to be dead (or is disabled there): '
                         'one tenant''s mass delete slows every tenant''s reads',
                         round((v_factor * 100)::numeric, 1),
                         array_to_string(v_leaves, ', '));
        fix := v_tune_sql;
    END IF;
    RETURN NEXT;

    -- Dead tuples (statistics, possibly a few seconds behind).
    check_name := 'target.dead_tuples';
    fix := NULL;
    SELECT coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(s.n_dead_tup), 0)::bigint,
           max(greatest(s.last_vacuum, s.last_autovacuum))
      INTO v_live, v_dead, v_last_vacuum
      FROM pg_catalog.pg_stat_all_tables s
     WHERE s.relid = p_reg.target
        OR (v_relkind = 'p' AND s.relid IN (
              SELECT pt.relid FROM pg_catalog.pg_partition_tree(p_reg.target) pt
               WHERE pt.isleaf));
    IF v_dead > 1000 AND v_dead > 0.2 * v_live THEN
        status := 'warn';
        detail := format('%s dead tuples for %s live (%s%%), last vacuumed %s', v_dead,
                         v_live, round(100.0 * v_dead / greatest(v_live, 1)),
                         coalesce(v_last_vacuum::text, 'never'));
        fix := format('VACUUM (ANALYZE) %s;', target);
    ELSE
        status := 'ok';
        detail := format('%s dead tuples for %s live', v_dead, v_live);
    END IF;
    RETURN NEXT;
END
$function$;
