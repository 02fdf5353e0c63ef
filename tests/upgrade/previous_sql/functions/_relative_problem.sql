CREATE OR REPLACE FUNCTION pgjobs._relative_problem(
    p_target regclass,
    OUT message  text,
    OUT hint     text,
    OUT errcode  text,
    OUT relative regclass)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether another registered target holds rows of p_target, or p_target
-- holds its rows: an ancestor of p_target (a partitioned table p_target
-- is a partition of, at any depth, or a table it inherits from) or a
-- descendant. Then the message, hint and SQLSTATE (22023) of the error,
-- and that table (the first by name); else all NULL.
-- Each registered table is its own (target, scope) for the gate and the
-- mask: with a partitioned table and one of its partitions both registered,
-- a delete queued on the partition was not in pgjobs.mask,
-- pgjobs.visible or pgjobs.visible_count of the parent (every row it was
-- about to delete read as visible there), nor the parent's delete in reads
-- of the partition, and a backfill of the parent ran beside the
-- partition's delete instead of waiting behind it. register_target
-- refuses the second registration, and pgjobs._target (every use of a
-- target) refuses both tables once a registered table is attached under
-- another (ATTACH PARTITION, ALTER TABLE ... INHERIT), until one is
-- unregistered. Walks pg_inherits upwards from each registered target and
-- from p_target: a few rows each. Locks nothing.
DECLARE
    v_ancestor boolean;
BEGIN
    WITH RECURSIVE up(rel, start) AS (
        SELECT r.target::oid, r.target::oid FROM pgjobs.target_registry r
        UNION
        SELECT p_target::oid, p_target::oid
        UNION
        SELECT i.inhparent, up.start
          FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.rel
    )
    SELECT x.rel::regclass, x.ancestor INTO relative, v_ancestor
      FROM (SELECT up.rel, true AS ancestor        -- a registered table above p_target
              FROM up
             WHERE up.start = p_target AND up.rel <> p_target
               AND EXISTS (SELECT 1 FROM pgjobs.target_registry r WHERE r.target = up.rel)
            UNION ALL
            SELECT up.start, false                 -- a registered table below it
              FROM up
             WHERE up.rel = p_target AND up.start <> p_target) x
     ORDER BY x.rel::regclass::text
     LIMIT 1;
    IF relative IS NULL THEN
        RETURN;
    END IF;
    message := CASE WHEN v_ancestor
                    THEN format('table %s is a partition or inheritance child of %s, which is '
                                'registered with pgjobs', p_target, relative)
                    ELSE format('table %s holds the rows of %s (a partition or inheritance '
                                'child of it), which is registered with pgjobs', p_target,
                                relative) END;
    errcode := '22023';
    hint := format('pgjobs queues writers and masks pending deletes per registered table, so a '
                   'job on one of two registered tables of a tree is not seen by the other''s '
                   'reads and writers: register one table of the tree (the partitioned parent: '
                   'a job''s scope keeps its pages to the partitions holding it) and unregister '
                   'the other, e.g. SELECT pgjobs.unregister_target(%L);',
                   CASE WHEN v_ancestor THEN p_target ELSE relative END::text);
END
$$;
