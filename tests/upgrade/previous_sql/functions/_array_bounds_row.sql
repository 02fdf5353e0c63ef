CREATE OR REPLACE FUNCTION pgjobs._array_bounds_row(p_target regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What pgjobs._visible_as appends to a page's to_jsonb(t.*): for each
-- column of p_target whose type may hold an array (itself, a domain over
-- one, a composite or an array holding one, nested), in column order,
-- ' OPERATOR(pg_catalog.||) CASE WHEN <pgjobs._array_bounds_test of the
-- column> THEN {column: its text in fixed styles} ELSE {} END'; NULL when
-- no column may hold an array. Only pg_catalog and pgjobs in the text.
--
-- Building it walks the catalog (a pinned call of _array_bounds_test per
-- type met, ~40 us each: ~0.4 ms of every page of a target with a few
-- array or composite columns, more than the page; issue 11). So it is
-- kept in this session, in the setting pgjobs.verified_shape_<oid> as
-- '<DDL epoch>/<seal>/<text>', and used again while the DDL fence's epoch
-- (pgjobs.ddl_fence, migration 0091: every committed DDL transaction moves
-- it) is the one it was built at. The text runs as pgjobs' owner, and any
-- role may set a pgjobs.* setting: a kept text counts only with the seal
-- pgjobs._verdict_mac makes of the slot, the target, the text and the
-- fence's state (the epoch, the fence row's version, the event triggers'
-- rows' versions; with the engine's secret, the role it runs as, which is
-- pgjobs' owner whoever calls visible: the text depends on the target
-- alone, and this backend), so a value a client wrote, edited, or copied
-- from another slot, target, session or fence state is rebuilt, never
-- run. Nothing is kept or used when the fence cannot see every DDL: its
-- event triggers missing, disabled or enabled for origin sessions only, or
-- pgjobs._ddl_fence_mark's owner unable to write a mark (no superuser ran
-- the migrate, owners changed), a mark in pgjobs.ddl_fence_marks (a DDL of
-- this very transaction, or one committed with no commit trigger), a
-- temporary target or a type in a temporary schema anywhere in its
-- columns (the fence does not mark DDL on temporary objects). A read
-- consistent with its own snapshot: the epoch and the catalog are read
-- through the same one. Locks nothing.
DECLARE
    v_slot text := 'shape_' || p_target::oid::text;
    v_value text := current_setting('pgjobs.verified_' || v_slot, true);
    v_epoch bigint;
    v_at text;
    v_fenced boolean;
    v_kept_at text;
    v_kept_mac text;
    v_text text;
    v_mac text;
BEGIN
    -- Most targets have no column whose type may hold an array: for them
    -- one read of the columns decides (cheaper than the kept text's check).
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                     JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                    WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
                      AND (ty.typcategory = 'A' OR ty.typtype IN ('c', 'd'))) THEN
        RETURN NULL;
    END IF;
    -- The fence's epoch, and whether it sees every DDL: its event triggers
    -- in place and enabled, and no mark in pgjobs.ddl_fence_marks that this
    -- snapshot sees. A mark is deleted by the commit trigger in the very
    -- transaction that made it, so one seen is this transaction's own DDL,
    -- not committed yet, or one committed without moving the epoch (the
    -- commit trigger disabled, dropped or failing).
    --
    -- The seal's time is more than the epoch's number (h94): the fence
    -- row's version (its xmin) and the event triggers' rows' versions too.
    -- An epoch seen in this transaction may be its own, not committed (a
    -- DDL, then SET CONSTRAINTS ALL IMMEDIATE fires the commit trigger at
    -- once): a value sealed then and copied out, or kept across a
    -- ROLLBACK PREPARED, met the same number again at the next DDL that
    -- committed, over another shape; that DDL's version of the row is
    -- another xmin. And a trigger disabled, a DDL, the trigger enabled
    -- again moved no epoch; it rewrote the triggers' rows. Enabled ALWAYS
    -- only (the migration's state): one enabled for origin sessions does
    -- not fire in a superuser's session_replication_role = replica.
    SELECT f.epoch,
           pg_catalog.jsonb_build_array(f.epoch::text, f.xmin::text,
               (SELECT pg_catalog.string_agg(e.xmin::text, ',' ORDER BY e.evtname)
                  FROM pg_catalog.pg_event_trigger e
                 WHERE e.evtname IN ('pgjobs_ddl_fence', 'pgjobs_ddl_fence_drop')))::text,
           (SELECT count(*) FROM pg_catalog.pg_event_trigger e
             WHERE (e.evtname, e.evtevent) IN (('pgjobs_ddl_fence', 'ddl_command_end'),
                                               ('pgjobs_ddl_fence_drop', 'sql_drop'))
               AND e.evtenabled = 'A' AND e.evttags IS NULL
               AND e.evtfoid = 'pgjobs._ddl_fence_mark()'::regprocedure) = 2
           -- and the mark is made: pgjobs._ddl_fence_mark runs as its owner,
           -- and one that may not write the marks warns and lets the DDL go
           -- unmarked, no epoch moved (an owner changed one object at a time;
           -- a role's grant revoked, which no event trigger sees)
           AND (SELECT p.prosecdef
                       AND has_schema_privilege(p.proowner, 'pgjobs', 'USAGE')
                       AND has_table_privilege(p.proowner, 'pgjobs.ddl_fence_marks', 'INSERT')
                  FROM pg_catalog.pg_proc p
                 WHERE p.oid = 'pgjobs._ddl_fence_mark()'::regprocedure)
           AND NOT EXISTS (SELECT FROM pgjobs.ddl_fence_marks m)
      INTO v_epoch, v_at, v_fenced
      FROM pgjobs.ddl_fence f;
    v_fenced := coalesce(v_fenced, false) AND v_epoch IS NOT NULL;
    IF v_fenced AND v_value ~ '^[0-9]{1,19}/[0-9a-f]{64}/' THEN
        v_kept_at := split_part(v_value, '/', 1);
        v_kept_mac := split_part(v_value, '/', 2);
        IF v_kept_at = v_epoch::text THEN
            v_text := substr(v_value, length(v_kept_at) + 67);
            v_mac := pgjobs._verdict_mac(jsonb_build_array(v_slot, p_target::oid::text,
                                                           v_text)::text, v_at);
            -- Compared as hashes: the time a comparison takes says nothing of the seal.
            IF v_mac IS NOT NULL AND sha256(convert_to(v_mac, 'UTF8'))
                                     = sha256(convert_to(v_kept_mac, 'UTF8')) THEN
                RETURN nullif(v_text, '');
            END IF;
        END IF;
    END IF;
    SELECT string_agg(format(' OPERATOR(pg_catalog.||) CASE WHEN %s THEN '
                             'pg_catalog.jsonb_build_object(%L, pgjobs._value_text(t.%I)) '
                             'ELSE ''{}''::pg_catalog.jsonb END',
                             c.test, c.attname, c.attname), '' ORDER BY c.attnum)
      INTO v_text
      FROM (SELECT a.attname, a.attnum,
                   CASE WHEN ty.typcategory = 'A' OR ty.typtype IN ('c', 'd')
                        THEN pgjobs._array_bounds_test(format('t.%I', a.attname),
                                                       a.atttypid::regtype) END AS test
              FROM pg_catalog.pg_attribute a
              JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
             WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped) c
     WHERE c.test IS NOT NULL;
    IF v_fenced
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_class r
                        WHERE r.oid = p_target AND r.relpersistence = 't')
       AND NOT EXISTS (
           -- every type the columns reach: domains' base types, arrays' and
           -- other subscripted types' elements, composites' fields
           WITH RECURSIVE reached(typ) AS (
               SELECT a.atttypid FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
               UNION
               SELECT n.typ
                 FROM reached r
                 JOIN pg_catalog.pg_type ty ON ty.oid = r.typ
                 CROSS JOIN LATERAL (
                     SELECT nullif(ty.typbasetype, 0) AS typ
                     UNION ALL SELECT nullif(ty.typelem, 0)
                     UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid
                                  AND a.attnum > 0 AND NOT a.attisdropped) n
                WHERE n.typ IS NOT NULL)
           SELECT FROM reached r
             JOIN pg_catalog.pg_type ty ON ty.oid = r.typ
             JOIN pg_catalog.pg_namespace s ON s.oid = ty.typnamespace
            WHERE s.nspname ~ '^pg_temp_[0-9]+$') THEN
        v_mac := pgjobs._verdict_mac(jsonb_build_array(v_slot, p_target::oid::text,
                                                       coalesce(v_text, ''))::text,
                                     v_at);
        IF v_mac IS NOT NULL THEN
            -- Session-level, as the trust verdicts: the next transaction's
            -- read uses it; a rollback of this one discards it.
            PERFORM set_config('pgjobs.verified_' || v_slot,
                               v_epoch || '/' || v_mac || '/' || coalesce(v_text, ''), false);
        END IF;
    END IF;
    RETURN v_text;
END
$$;

COMMENT ON FUNCTION pgjobs._array_bounds_row(regclass) IS
'Internal: the text pgjobs.visible appends to a page''s to_jsonb(t.*) so that each column '
'holding an array whose lower bounds are not all 1 reads as its PostgreSQL text (NULL: no '
'column may hold an array); kept sealed in this session until the DDL fence''s epoch moves.';
