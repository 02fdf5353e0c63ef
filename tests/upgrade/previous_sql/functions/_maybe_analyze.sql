CREATE OR REPLACE FUNCTION pgjobs._maybe_analyze(p_target regclass, p_scope_column name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Refreshes the target's row count and scope statistics once a fifth of its
-- rows (and at least 10,000) changed since the last ANALYZE. After one tenant's mass
-- delete the stale statistics still count the deleted rows, and the planner
-- then walks the primary key across every tenant to find the scope's few
-- survivors (a 0.7 ms keyset page became 76 ms); autovacuum catches up only
-- a minute or more later. Called by the runner between pages. Only the
-- scope column is analyzed: sampling is the same, but skipping the jsonb
-- statistics makes it several times cheaper.
-- Never fails the page: a lock wait (autovacuum is analyzing) or a missing
-- privilege just skips it. Locks: SHARE UPDATE EXCLUSIVE on the target, for
-- the ANALYZE. Returns whether it analyzed.
DECLARE
    v_changed bigint;
    v_rows double precision;
BEGIN
    SELECT s.n_mod_since_analyze, c.reltuples INTO v_changed, v_rows
      FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
     WHERE s.relid = p_target;
    IF v_changed IS NULL OR v_changed < greatest(10000, 0.2 * greatest(v_rows, 0)) THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format('ANALYZE %s (%I)', p_target, p_scope_column);
    EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
        RETURN false;
    END;
    RETURN true;
END
$$;
