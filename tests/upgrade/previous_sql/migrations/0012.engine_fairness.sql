-- pgjobs 0012: engine fairness and statistics.
-- * Round-robin by budget: jobs.queued_at is when a job last joined the
--   queue (submitted, or handed back by pgjobs.release when a runner's
--   budget ran out), and claim hands out jobs by priority, then queued_at,
--   then id. A job released at the end of a budget so goes behind the jobs
--   that were waiting, instead of being claimed again first (by id) and
--   starving every later job. Existing rows get the migration's instant
--   (a constant default: no table rewrite), so among them the order stays
--   by id. The gate's order of one scope's writers stays by id
--   (pgjobs._writer_may_start).
-- * pgjobs._maybe_analyze takes the job (its checkpoint keeps how often the
--   job analyzed), so the version on (target, scope column) goes.
-- depends: 0008.scope_identity

ALTER TABLE pgjobs.jobs ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN pgjobs.jobs.queued_at IS
    'When the job last joined the queue: submitted, or handed back at the end of a runner''s '
    'budget. Claims take jobs by priority, then this, then id.';

DROP INDEX pgjobs.jobs_queued_idx;
-- claim: the queued jobs in the order they are handed out.
CREATE INDEX jobs_queued_idx ON pgjobs.jobs (priority DESC, queued_at, id)
    WHERE status = 'queued';

DROP FUNCTION IF EXISTS pgjobs._maybe_analyze(regclass, name);
