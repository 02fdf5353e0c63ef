CREATE OR REPLACE FUNCTION pgjobs._engine_grant_problem(
    p_target regclass,
    p_kind text,
    p_payload jsonb DEFAULT '{}',
    p_columns text[] DEFAULT '{}',
    OUT message text,
    OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What the engine's role (pgjobs._engine_role) lacks on p_target to run
-- jobs of kind p_kind, in a form that does not raise: a message and a
-- hint holding the one GRANT that gives everything missing, or both NULL.
-- A target owned by another role than the engine's is read and written
-- with the engine's own grants: without them a job is accepted and fails
-- at its first page with a bare "permission denied for table".
-- p_kind NULL: what every use of the target needs, SELECT (on p_columns,
-- the registered columns, or on the table); register_target asks this.
-- delete SELECT and DELETE, backfill SELECT and UPDATE, export SELECT,
-- import INSERT (and UPDATE when its payload says on_duplicate "update"):
-- the submits ask
-- this (pgjobs._insert_job_row), doctor's target.grants too. A custom
-- kind: nothing more (its external worker acts on the rows, not pgjobs).
-- UPDATE and INSERT granted on some columns only pass here: the pages
-- check the columns a job writes. Locks nothing.
DECLARE
    v_role name := pgjobs._engine_role();
    v_privileges text[];
    v_privilege text;
    v_missing text[] := '{}'::text[];
    v_has boolean;
BEGIN
    v_privileges := CASE
        WHEN p_kind IS NULL OR p_kind = 'export' THEN ARRAY['SELECT']
        WHEN p_kind = 'delete' THEN ARRAY['SELECT', 'DELETE']
        WHEN p_kind = 'backfill' THEN ARRAY['SELECT', 'UPDATE']
        WHEN p_kind = 'import' THEN
            CASE WHEN coalesce(p_payload ->> 'on_duplicate', '') = 'update'
                 THEN ARRAY['INSERT', 'UPDATE'] ELSE ARRAY['INSERT'] END
        ELSE '{}'::text[] END;
    IF v_role IS NULL THEN
        RETURN;
    END IF;
    FOREACH v_privilege IN ARRAY v_privileges LOOP
        v_has := has_table_privilege(v_role, p_target, v_privilege);
        IF NOT v_has AND v_privilege = 'SELECT' THEN
            v_has := CASE WHEN coalesce(cardinality(p_columns), 0) = 0
                          THEN has_any_column_privilege(v_role, p_target, 'SELECT')
                          ELSE NOT EXISTS (
                              SELECT 1 FROM unnest(p_columns) c
                               WHERE NOT has_column_privilege(v_role, p_target, c, 'SELECT'))
                     END;
        ELSIF NOT v_has AND v_privilege IN ('UPDATE', 'INSERT') THEN
            v_has := has_any_column_privilege(v_role, p_target, v_privilege);
        END IF;
        IF NOT v_has THEN
            v_missing := v_missing || v_privilege;
        END IF;
    END LOOP;
    IF cardinality(v_missing) > 0 THEN
        message := format('permission denied: role %s, which pgjobs runs as (it owns pgjobs'' '
                          'functions), lacks %s on %s: %s', v_role,
                          array_to_string(v_missing, ' and '), p_target,
                          CASE WHEN p_kind IS NULL THEN 'no job or read of it could run'
                               ELSE pgjobs._a_job(p_kind) || ' of it would fail' END);
        hint := format('As the owner of %s: GRANT %s ON %s TO %I;', p_target,
                       array_to_string(v_missing, ', '), p_target, v_role);
    END IF;
END
$$;
