CREATE OR REPLACE FUNCTION pgjobs._table_holders(p_target regclass, p_partitions boolean)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Who keeps a page of a job on p_target from its table: the sessions that
-- hold p_target in a mode that conflicts with a page's
-- (pgjobs._lock_holders), else those whose request of such a mode is queued
-- (pgjobs._lock_queued); with p_partitions, else the same on any partition
-- of p_target at any depth (named: '... (on its partition P)'). NULL when
-- none. p_partitions is for a look-up after a page actually waited: a
-- page's statements lock the leaves they touch, so a CREATE INDEX, LOCK
-- TABLE or ALTER TABLE of one leaf held the page while the parent's
-- look-up found nobody, and the page was retried like one behind rows (the
-- runner's whole budget, the attempt failed after 1000 waits). A claim's
-- look-up before any wait leaves the partitions out: a leaf held may be one
-- the job's scope does not touch. The leaves from pg_inherits, whose look-up
-- locks nothing (pg_partition_tree would wait for a leaf being altered).
-- Locks nothing.
DECLARE
    v_holders text;
    v_rel oid;
BEGIN
    v_holders := coalesce(pgjobs._lock_holders(p_target, NULL), pgjobs._lock_queued(p_target));
    IF v_holders IS NOT NULL OR NOT p_partitions THEN
        RETURN v_holders;
    END IF;
    FOR v_rel IN
        WITH RECURSIVE tree (relid) AS (
            SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = p_target
            UNION
            SELECT i.inhrelid FROM tree t
              JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid)
        SELECT DISTINCT l.relation FROM pg_catalog.pg_locks l
         WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid()
           AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                              WHERE d.datname = current_database())
           AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                          'AccessExclusiveLock')
           AND l.relation IN (SELECT t.relid FROM tree t)
         ORDER BY l.relation
    LOOP
        v_holders := coalesce(pgjobs._lock_holders(v_rel::regclass, NULL),
                              pgjobs._lock_queued(v_rel::regclass));
        IF v_holders IS NOT NULL THEN
            RETURN format('%s (on its partition %s)', v_holders, v_rel::regclass);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
