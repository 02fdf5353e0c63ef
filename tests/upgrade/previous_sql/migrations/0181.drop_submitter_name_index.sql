-- pgjobs 0181: index jobs_submitter_idx (submitted_by, target), added by
-- 0045 for the client policy's by-name branch and pgjobs._has_jobs_on, is
-- read by nothing since both ask by oid (0163; 0180 dropped the policy's
-- last by-name branch): they probe jobs_submitter_target_idx
-- (submitted_by_oid, target), and no pgjobs function or policy compares
-- submitted_by (EXPLAIN on 100,000 jobs: only an ad-hoc
-- `WHERE submitted_by = 'name'` reads it). It cost every submit an index
-- insert and the jobs table its space. A plain DROP INDEX (CONCURRENTLY
-- cannot run in the migration's transaction): it removes catalog entries
-- and the index's file, never scans the table; its ACCESS EXCLUSIVE lock on
-- pgjobs.jobs is held from the drop to the migration's commit, a moment,
-- after waiting for transactions using the table to end (a page's, a
-- claim's: short), as any migration touching the table does. IF EXISTS: an
-- administrator may have dropped it already. No data changes; jobs in
-- flight run on.
-- depends: 0180.submitter_oid_backfill

DROP INDEX IF EXISTS pgjobs.jobs_submitter_idx;
