CREATE OR REPLACE FUNCTION pgjobs._mask(p_target regclass, p_scope text,
                                        p_count boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The mask text of (p_target, p_scope), without a privilege check: shared
-- by pgjobs.mask (which checks) and the read functions (which checked
-- already). One `NOT coalesce((predicate), false)` per queued, running or paused
-- delete job of the scope, ANDed in job order; 'true' when none is pending.
-- p_count: for a statement that reads the whole scope (pgjobs.visible_count,
-- pgjobs.preview's counts). A predicate that probes its exclude list in
-- pgjobs.job_exclusions row by row (its tail, byte for byte, is
-- " AND NOT (<pgjobs._exclusion_clause of the job>)") gets the clause's
-- count form instead, which the planner may read once into a hash table:
-- the same rows, without one index probe per row of the scope. Any other
-- predicate is used as stored.
-- A delete whose target's columns changed since its submit is left out
-- (pgjobs._columns_changed; pgjobs._mask_candidates likewise).
-- Reads pgjobs.jobs through jobs_pending_writers_idx. Locks nothing.
-- PL/pgSQL rather than SQL only so that the query's plan is cached for the
-- session: a SQL function's body is planned again in every transaction,
-- which was a third of the overhead of a pgjobs.visible page.
DECLARE
    v_mask text;
BEGIN
    SELECT string_agg(format('NOT coalesce((%s), false)', coalesce(
               CASE WHEN p_count AND j.survivors ->> 'exclusions' = 'table' THEN (
                   SELECT left(j.predicate, -length(p.tail))
                          || format(' AND NOT (%s)', pgjobs._exclusion_clause(
                                 j.survivors ->> 'key_column', j.survivors ->> 'key_type',
                                 NULL, j.id, true))
                     FROM (SELECT format(' AND NOT (%s)', pgjobs._exclusion_clause(
                                      j.survivors ->> 'key_column', j.survivors ->> 'key_type',
                                      NULL, j.id)) AS tail) p
                    WHERE right(j.predicate, length(p.tail)) = p.tail) END,
               j.predicate)), ' AND ' ORDER BY j.id)
      INTO v_mask
      FROM pgjobs.jobs j
     WHERE j.target = p_target AND j.scope = p_scope
       AND j.writes AND j.kind = 'delete' AND j.status IN ('queued', 'running', 'paused')
       -- A delete whose columns were renamed, dropped or retyped since its
       -- submit deletes nothing more (its next page fails it:
       -- pgjobs._columns_changed), and its predicate would test other
       -- columns: it hides nothing. (pgjobs._columns_same's test, spelled
       -- out here and in pgjobs._mask_candidates: a call of it per read
       -- costs 0.1-0.3 ms, its settings; tests/test_trust_column_changes.py
       -- keeps the three alike.)
       AND (j.target_columns IS NULL
            OR NOT EXISTS (
                SELECT FROM jsonb_to_recordset(j.target_columns)
                            AS c(n smallint, name name, type oid, typmod integer,
                                 "collation" oid, labels jsonb)
                 WHERE NOT EXISTS (
                       SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = p_target AND a.attnum = c.n
                          AND a.attname = c.name AND a.atttypid = c.type
                          AND a.atttypmod = c.typmod AND a.attcollation = c."collation"
                          AND NOT a.attisdropped)
                   OR (c.labels IS NOT NULL
                       AND EXISTS (SELECT FROM jsonb_each_text(c.labels) l
                                    WHERE NOT EXISTS (
                                          SELECT FROM pg_catalog.pg_enum e
                                           WHERE e.oid = l.key::oid
                                             AND e.enumlabel = l.value::name)))));
    RETURN coalesce(v_mask, 'true');
END
$$;
