-- pgjobs 0018: "writing kind" defined once. A writing job changes the rows
-- of its target (delete, backfill, import): it takes its scope's gate, its
-- throttling options and its place in the scope's queue. That list was
-- written out in eight places (the two partial indexes below, the gate, the
-- claim, submit, retry, throttling, doctor); a new writing kind missed in
-- one of them would run beside another writer of its scope.
-- jobs.writes is now the one definition: every routine reads the column
-- of its row, the indexes of the gate are built on it, and
-- pgjobs._writes(kind), compiled from its expression on every migrate,
-- answers for a kind that has no row yet. A literal
-- expression rather than a function: it costs nothing per claim, and it
-- can change only here, with the indexes it feeds (a new writing kind is a
-- migration: drop and re-add the column, then re-create both indexes).
-- depends: 0013.imports

ALTER TABLE pgjobs.jobs
    ADD COLUMN writes boolean GENERATED ALWAYS AS (kind IN ('delete', 'backfill', 'import')) STORED;
COMMENT ON COLUMN pgjobs.jobs.writes IS
    'Whether the job writes rows of its target (kind delete, backfill or import): such jobs '
    'take their scope''s gate, one at a time, in submission order.';

-- The gate: at most one writing job per (target, scope) runs at a time.
DROP INDEX pgjobs.jobs_one_writer_idx;
CREATE UNIQUE INDEX jobs_one_writer_idx ON pgjobs.jobs (target, scope)
    WHERE status = 'running' AND writes;

-- Pending writers per (target, scope): the gate's queue and the read mask.
DROP INDEX pgjobs.jobs_pending_writers_idx;
CREATE INDEX jobs_pending_writers_idx ON pgjobs.jobs (target, scope, id)
    WHERE status IN ('queued', 'running', 'paused') AND writes;
