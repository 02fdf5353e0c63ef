-- pgjobs 0040: imports take turns between tenants with exports. An import
-- or export submitted while imports or exports of its (target, scope) are
-- due and pending queues an hour after the latest of them
-- (pgjobs._insert_job_row), as exports alone did since 0039: both run to
-- their end once claimed, and a tenant's burst of imports held a worker's
-- slots until it was done. Only the column's comment changes; jobs in
-- flight keep their queued_at.
-- depends: 0039.export_turns

COMMENT ON COLUMN pgjobs.jobs.queued_at IS
'The job''s place in the queue: when it last joined it (submitted, or handed back at the end of a runner''s budget, a retry, a resume), or, for an export or import submitted while exports or imports of its scope were pending, an hour after the latest of them (turns between tenants). Claims take jobs by priority, then this, then id.';
