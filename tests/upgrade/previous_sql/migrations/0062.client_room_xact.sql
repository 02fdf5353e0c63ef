-- pgjobs 0062: a client's ceilings hold for transactions that submit many
-- jobs. A count sees the transaction's own uncommitted jobs but not another
-- session's: two sessions of a client each submitting 85 jobs in one
-- transaction under max_jobs_kept_per_client 100 both stayed far from the
-- ceiling, locked nothing, and kept 170 (the same for
-- max_pending_per_client and max_kinds_per_client). room_xact is the
-- transaction that made the job count toward its client's ceilings: its
-- submit (pgjobs._insert_job_row) or its last retry (pgjobs._retry_as).
-- The checks look up, by the index below, whether this transaction already
-- counts a job of the client (a subtransaction rolled back takes its jobs
-- with it) and then take the client's lock exclusively: such transactions
-- of one client count one after the other. The index also serves the kept
-- count (its first column), so it replaces jobs_submitter_oid_idx of 0057.
-- NULL for jobs made before this migration: they are committed, and no
-- transaction of the new code looks for them. No data changes; jobs in
-- flight run as they are.
-- depends: 0057.client_kept

ALTER TABLE pgjobs.jobs ADD COLUMN IF NOT EXISTS room_xact xid8;

COMMENT ON COLUMN pgjobs.jobs.room_xact IS
'The transaction (top level) whose submit or retry last made this job count toward its '
'client''s ceilings (pgjobs._require_client_room); NULL before 0062.';

CREATE INDEX jobs_submitter_xact_idx ON pgjobs.jobs (submitted_by_oid, room_xact);

DROP INDEX pgjobs.jobs_submitter_oid_idx;
