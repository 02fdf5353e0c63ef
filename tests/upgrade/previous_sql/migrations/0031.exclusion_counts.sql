-- pgjobs 0031: counts hash a long exclude list; a key column named job_id
-- or key is probed correctly.
-- pgjobs.visible_count and pgjobs.preview's counts read the whole scope
-- through the mask, and a delete's list in pgjobs.job_exclusions (0029)
-- was probed there once per row: 2.3-2.9 times slower than the inline
-- array it replaced. pgjobs._exclusion_clause, pgjobs._mask and
-- pgjobs._mask_candidates take a trailing p_count (the form a count uses,
-- which the planner may hash), so their old signatures are dropped here.
-- The predicates stored by 0029's clause, and by submits since, named the
-- key column unqualified inside a sub-select over pgjobs.job_exclusions:
-- a target keyed by a column named job_id or key had it resolve to the
-- list's own column, so the exclusion held for every row or for none (a
-- delete removed nothing, or removed the keys it was told to keep). The
-- clause now renames the list's columns for such a key; the pending
-- deletes' predicates ending with the old clause get the new one, spelt
-- out here as pgjobs._exclusion_clause writes it (a migration never calls
-- a pgjobs function). Rows a running job already deleted are gone.
-- Catalog only, but for those few predicates.
-- depends: 0030.items_cleanup

DROP FUNCTION IF EXISTS pgjobs._exclusion_clause(name, text, text[], bigint);
DROP FUNCTION IF EXISTS pgjobs._mask(regclass, text);
DROP FUNCTION IF EXISTS pgjobs._mask_candidates(regclass, text);

UPDATE pgjobs.jobs j
   SET predicate = pg_catalog.left(j.predicate, -pg_catalog.length(t.old_tail)) || t.new_tail
  FROM (SELECT j2.id,
               pg_catalog.format(' AND NOT (EXISTS (SELECT FROM pgjobs.job_exclusions x '
                                 'WHERE x.job_id = %s AND x.key = (%I::text COLLATE "C") '
                                 'OFFSET 0))', j2.id, j2.survivors ->> 'key_column') AS old_tail,
               pg_catalog.format(' AND NOT (EXISTS (SELECT FROM pgjobs.job_exclusions x '
                                 '(x_job_id, x_key) WHERE x.x_job_id = %s '
                                 'AND x.x_key = (%I::text COLLATE "C") OFFSET 0))',
                                 j2.id, j2.survivors ->> 'key_column') AS new_tail
          FROM pgjobs.jobs j2
         WHERE j2.kind = 'delete' AND j2.status IN ('queued', 'running', 'paused')
           AND j2.survivors ->> 'exclusions' = 'table'
           AND j2.survivors ->> 'key_column' IN ('job_id', 'key')) t
 WHERE j.id = t.id
   AND pg_catalog.right(j.predicate, pg_catalog.length(t.old_tail)) = t.old_tail;
