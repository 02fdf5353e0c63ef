-- pgjobs 0068: a client's pause of a writing job is bounded. A paused
-- writer that had started keeps its place in its scope's queue (API.md:
-- later writers wait behind it), and a paused job was never pruned, so a
-- role that may only INSERT could pause its started import and stall every
-- later delete, backfill and import of the scope for good (a client's
-- paused delete or backfill held the scope's imports alike). The engine now
-- cancels a writing job paused by a role that is not an administrator once
-- it has been paused for set_defaults' max_client_pause (default 1 hour;
-- pgjobs._expire_client_pauses, run by pgjobs.prune and pgjobs.run).
-- pgjobs.pause records when (paused_at) and whether an administrator
-- paused it (paused_by_admin). Jobs paused (or with a pause requested)
-- before this migration: who paused them is not known, so they count as a
-- client's pause whose clock starts now, at the migrate.
-- depends: 0057.client_kept

ALTER TABLE pgjobs.jobs ADD COLUMN IF NOT EXISTS paused_at timestamptz;
ALTER TABLE pgjobs.jobs ADD COLUMN IF NOT EXISTS paused_by_admin boolean NOT NULL DEFAULT false;

UPDATE pgjobs.jobs SET paused_at = now()
 WHERE paused_at IS NULL AND (status = 'paused' OR pause_requested_at IS NOT NULL);

-- The sweep's one look: a client's paused writers, oldest pause first.
CREATE INDEX IF NOT EXISTS jobs_client_paused_idx ON pgjobs.jobs (paused_at)
 WHERE status = 'paused' AND writes AND NOT paused_by_admin;

COMMENT ON COLUMN pgjobs.jobs.paused_at IS
'When the job was last paused (or its pause requested), by pgjobs.pause; since 0068 (jobs '
'paused before it: the migrate''s time). A writing job a client paused is canceled by the '
'engine once paused for set_defaults'' max_client_pause (pgjobs._expire_client_pauses).';
COMMENT ON COLUMN pgjobs.jobs.paused_by_admin IS
'Whether an administrator (a pgjobs_admin member) paused the job last: such a pause is not '
'bounded by max_client_pause (pgjobs._expire_client_pauses).';
