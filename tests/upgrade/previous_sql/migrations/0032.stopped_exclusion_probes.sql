-- pgjobs 0032: canceled and failed deletes get 0031's renamed probe too.
-- 0031 rewrote the probe of pending deletes (queued, running, paused) whose
-- key column is named job_id or key, and left the others with 0029's clause,
-- which names the key column unqualified inside the sub-select over
-- pgjobs.job_exclusions, where it resolves to the list's own column. But
-- pgjobs.retry queues a canceled or failed job with the predicate it has:
-- retried after the upgrade, such a delete keyed by job_id removed the keys
-- it was told to keep (the probe found none of them), and keyed by key it
-- removed nothing (the probe found every row). Their predicates ending with
-- the old clause get the new one, spelt out as 0031 spells it (a migration
-- never calls a pgjobs function). Rows such a job deleted before it stopped
-- are gone; a succeeded delete is never run again and keeps its text.
-- Catalog only, but for those few predicates.
-- depends: 0031.exclusion_counts

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
         WHERE j2.kind = 'delete' AND j2.status IN ('canceled', 'failed')
           AND j2.survivors ->> 'exclusions' = 'table'
           AND j2.survivors ->> 'key_column' IN ('job_id', 'key')) t
 WHERE j.id = t.id
   AND pg_catalog.right(j.predicate, pg_catalog.length(t.old_tail)) = t.old_tail;
