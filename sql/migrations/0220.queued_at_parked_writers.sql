-- pgjobs 0220: jobs.queued_at's comment names the park of a delete or
-- backfill submitted behind a writer of its scope that has not started
-- (pgjobs._turn_at_submit, pgjobs._pass_writer_turn). Only the comment:
-- no row, index or job in flight changes.
-- depends: 0215.reg_names_of_ended_jobs
COMMENT ON COLUMN pgjobs.jobs.queued_at IS 'The job''s place in the queue: when it last joined it (submitted, or handed back at the end of a runner''s budget, a retry, a resume), or, for an export or import submitted while exports or imports of its scope were pending, an hour after the latest of them (turns between tenants), or, for a delete or backfill submitted behind a queued writer of its scope that has not started, an hour ahead until that writer starts, fails at its start or is canceled (then now()). Claims take jobs by priority, then this, then id.';
