-- pgjobs 0010: pause, resume, retry (issue 10, item 5).
--
-- A job may be `paused`: never handed out, not finished (no finished_at,
-- never pruned), and, for a writing job, still pending: it holds its
-- scope's gate in submission order and a paused delete keeps its rows
-- masked, so the partial index of pending writers covers it.
--
-- pause_requested_at: a pause asked of a running job, honoured by its
-- owner after the page in flight (or at its next heartbeat), as
-- cancel_requested_at is for a cancel.
--
-- gate_order: where a job stands in its scope's writer queue. NULL means
-- its id (submission order); pgjobs.retry gives a requeued job a fresh
-- place from the id sequence, behind every writer submitted before the
-- retry, as a new submission would be.
-- depends: 0008.scope_identity

ALTER TABLE pgjobs.jobs
    ADD COLUMN pause_requested_at timestamptz,
    ADD COLUMN gate_order bigint;

-- The status check of 0001 has a generated name: find it by what it says.
DO $status$
DECLARE
    v_name name;
BEGIN
    FOR v_name IN
        SELECT c.conname
          FROM pg_catalog.pg_constraint c
         WHERE c.conrelid = 'pgjobs.jobs'::regclass AND c.contype = 'c'
           AND pg_catalog.pg_get_constraintdef(c.oid) LIKE '%''queued''%'
           AND pg_catalog.pg_get_constraintdef(c.oid) LIKE '%''running''%'
           AND pg_catalog.pg_get_constraintdef(c.oid) LIKE '%''canceled''%'
           AND pg_catalog.pg_get_constraintdef(c.oid) NOT LIKE '%finished_at%'
           AND pg_catalog.pg_get_constraintdef(c.oid) NOT LIKE '%lease_expires_at%'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE pgjobs.jobs DROP CONSTRAINT %I', v_name);
    END LOOP;
END
$status$;

ALTER TABLE pgjobs.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'canceled'));

-- A pause request exists only while the job runs.
ALTER TABLE pgjobs.jobs ADD CONSTRAINT jobs_pause_request_check
    CHECK (pause_requested_at IS NULL OR status = 'running');

-- The gate takes the job's place (coalesce(gate_order, id)) instead of its
-- id: sql/functions/_writer_may_start.sql re-creates it with the new name.
DROP FUNCTION IF EXISTS pgjobs._writer_may_start(regclass, text, bigint);

DROP INDEX pgjobs.jobs_pending_writers_idx;
CREATE INDEX jobs_pending_writers_idx ON pgjobs.jobs (target, scope, id)
    WHERE status IN ('queued', 'running', 'paused')
      AND kind IN ('delete', 'backfill', 'import');
