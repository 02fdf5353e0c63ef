-- pgjobs 0146: every byte a client makes the engine keep counts toward one
-- ceiling, kept as a running total per client (client_room_locks.kept_bytes)
-- instead of a sum read at each call. max_item_bytes_per_client (0135)
-- bounded fan-out items and delete exclude lists only, and its sum could be
-- passed: read from a REPEATABLE READ caller's old snapshot, by more than
-- about ten sessions adding at once (the lock was taken near the ceiling
-- only), while job payloads (up to 1 MiB each, times the 100,000 jobs a
-- client may keep) and an import's rejects (up to 16 MiB each) counted
-- toward nothing. Each addition now updates the client's total in place
-- (pgjobs._keep_client_bytes): concurrent additions of one client wait for
-- each other and re-read the total committed before them, and a REPEATABLE
-- READ caller whose snapshot missed one fails with 40001. jobs.kept_bytes
-- is what a job added, given back when the job is deleted (pgjobs.prune)
-- by the trigger below; an import's rejects add theirs as they are written
-- and give them back when forgotten (pgjobs._count_reject_bytes).
-- Data: the totals start from the item_bytes of the jobs kept now (what
-- 0135 counted); payloads and rejects already kept are not counted (they
-- were written under the old rules and go with their jobs). Jobs in flight
-- run as they are.
-- depends: 0135.client_item_bytes

ALTER TABLE pgjobs.client_room_locks
    ADD COLUMN IF NOT EXISTS kept_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE pgjobs.jobs ADD COLUMN IF NOT EXISTS kept_bytes bigint;

UPDATE pgjobs.jobs SET kept_bytes = item_bytes
 WHERE item_bytes IS NOT NULL AND submitted_by_oid IS NOT NULL;
INSERT INTO pgjobs.client_room_locks (submitter_oid, kept_bytes)
SELECT j.submitted_by_oid, sum(j.kept_bytes)
  FROM pgjobs.jobs j
 WHERE j.kept_bytes IS NOT NULL
 GROUP BY j.submitted_by_oid
ON CONFLICT (submitter_oid) DO UPDATE SET kept_bytes = EXCLUDED.kept_bytes;

-- The sum of 0135 is no longer read.
DROP INDEX IF EXISTS pgjobs.jobs_client_item_bytes_idx;

COMMENT ON COLUMN pgjobs.client_room_locks.kept_bytes IS
'The bytes the client''s kept jobs hold beyond what every job may (fan-out items, delete '
'exclude lists, payloads past their allowance, import rejects): the sum of their kept_bytes, '
'kept by pgjobs._keep_client_bytes and the jobs delete trigger. What max_item_bytes_per_client '
'bounds.';
COMMENT ON COLUMN pgjobs.jobs.kept_bytes IS
'The bytes this job counts toward its submitter''s client_room_locks.kept_bytes (given back '
'when the job is deleted). NULL: none.';
