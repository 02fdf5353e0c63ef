-- pgjobs 0019: the WAL position of each submit, so that an export can read
-- its rows from a streaming standby (`pgjobs worker --read-dsn`).
-- A standby that has replayed past submit_lsn holds every row the submit's
-- snapshot saw (their commit records came before it in the WAL, and a
-- standby replays the WAL in order); the job row itself, and the rows of
-- the submitting transaction, are there once the job row is (the worker
-- waits for both). A default, not a value each submit routine computes:
-- every way a job row is inserted records it, and it is taken in the
-- submit's own transaction, after its cutoff snapshot.
-- Jobs submitted before this migration keep NULL: for them a worker waits
-- only until the job row is visible on the standby, which also implies that
-- the standby has replayed past the submit.
-- depends: 0018.writing_kind

ALTER TABLE pgjobs.jobs ADD COLUMN submit_lsn pg_lsn;
-- Separately from ADD COLUMN: a volatile default there would rewrite the
-- table and date every existing job now.
ALTER TABLE pgjobs.jobs ALTER COLUMN submit_lsn SET DEFAULT pg_catalog.pg_current_wal_insert_lsn();
COMMENT ON COLUMN pgjobs.jobs.submit_lsn IS
    'The WAL insert position when the job was submitted (NULL for jobs submitted before '
    'migration 0019): a worker reading an export from a standby waits until the standby has '
    'replayed past it.';
