CREATE OR REPLACE FUNCTION pgjobs._visible_prepared(
    p_target regclass,
    p_page text,
    p_scope text,
    p_after text,
    p_snapshot text)
RETURNS jsonb[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET plan_cache_mode = force_generic_plan
AS $$
-- The page of pgjobs.visible's short way run from a plan this session
-- keeps (issue 11): p_page, the statement pgjobs._visible_page built (its
-- parameters $1 the scope and $2 the cursor, as text), prepared once per
-- session under the name pgjobs_visible_<md5 of p_page> and executed with
-- p_scope and p_after, as the caller. Returns the page, or NULL when it
-- could not read it in the caller's own snapshot or p_target (the table
-- p_page reads) has partitions or inheritance children (the caller then
-- runs p_page itself). Locks nothing; PREPARE and DEALLOCATE its own
-- statements only (pgjobs_visible_*, at most 32 in a session).
-- The kept statement runs on its generic plan from the first execution
-- (plan_cache_mode): PostgreSQL's own rule kept planning it at every call
-- on a big scope, whose generic estimate (scope and cursor unknown) came
-- out above the custom plans'. That plan is the walk of the (scope, key)
-- index registration requires (the scope an equality, the key its order
-- and range), which reads no more rows than the page for any scope and
-- cursor. Only a plain table without children (relkind r, no
-- relhassubclass) keeps its page: a generic plan holds every partition or
-- child of the table and PostgreSQL locks each when the plan runs, before
-- it prunes any, so a read of one scope would open every tenant's
-- partition and wait on one held ACCESS EXCLUSIVE (a DDL, a VACUUM FULL);
-- p_page run with its parameters is planned with their values and pruned
-- to the scope's partitions (docs/engine.md, Partitioned targets).
-- SECURITY INVOKER: the statement runs as the caller, so PostgreSQL checks
-- the caller's privileges when it runs, every call, as for p_page run
-- directly. Nothing of the session is trusted but what it shows:
-- * the statement of that name is used only if pg_prepared_statements shows
--   it is exactly this function's PREPARE of p_page with parameters (text,
--   text, text); any other (a client's of the same name) is deallocated
--   and prepared again. The same text always means the same statement:
--   PostgreSQL analyses a kept statement again under this function's
--   pinned search_path when it runs under another (plancache.c), and
--   whenever an object it names changes, as it analyses p_page afresh.
-- * VOLATILE, because PostgreSQL runs PREPARE and EXECUTE in no other
--   function; so the statement reads in a snapshot of its own, newer than
--   the one pgjobs.visible checked the registration and the pending
--   deletes in. The statement reads the page only when its snapshot is
--   p_snapshot, the caller's (pg_current_snapshot(): the same running and
--   committed transactions, so the same rows), and answers NULL otherwise
--   (a transaction ended in between). pgjobs.visible calls it only in a
--   transaction that has written nothing (no transaction id), so the
--   command counter, which a snapshot's text does not show, changes no row
--   either.
DECLARE
    v_name text := 'pgjobs_visible_' || md5(p_page);
    v_prepare text;
    v_same boolean;
    v_stale text;
    v_rows jsonb[];
BEGIN
    IF (SELECT c.relkind = 'r' AND NOT c.relhassubclass FROM pg_catalog.pg_class c
         WHERE c.oid = p_target) IS NOT TRUE THEN
        RETURN NULL;
    END IF;
    v_prepare := format('PREPARE %I(text, text, text) AS SELECT CASE WHEN '
                        'pg_catalog.pg_current_snapshot()::text = $3 THEN (%s) END',
                        v_name, p_page);
    SELECT s.statement = v_prepare AND s.parameter_types = '{text,text,text}'::regtype[]
      INTO v_same
      FROM pg_catalog.pg_prepared_statements s
     WHERE s.name = v_name;
    IF v_same IS NOT TRUE THEN
        IF v_same IS NOT NULL THEN
            EXECUTE format('DEALLOCATE %I', v_name);  -- not this function's
        ELSIF (SELECT count(*) FROM pg_catalog.pg_prepared_statements s
                WHERE s.name LIKE 'pgjobs\_visible\_%') >= 32 THEN
            -- A session reading many targets (or limits) keeps no more than
            -- 32 plans: the old ones go, and are prepared again when read.
            FOR v_stale IN SELECT s.name FROM pg_catalog.pg_prepared_statements s
                            WHERE s.name LIKE 'pgjobs\_visible\_%' LOOP
                EXECUTE format('DEALLOCATE %I', v_stale);
            END LOOP;
        END IF;
        EXECUTE v_prepare;
    END IF;
    EXECUTE format('EXECUTE %I(%L, %L, %L)', v_name, p_scope, p_after, p_snapshot) INTO v_rows;
    RETURN v_rows;
END
$$;
