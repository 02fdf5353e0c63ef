-- pgjobs 0039: queued_at says what it now holds. An export submitted while
-- exports of its (target, scope) are due and pending queues an hour after
-- the latest of them (pgjobs._submit_export_as: turns between tenants, as
-- the runner's jobs take turns by budget), so a job's queued_at is its place
-- in the queue, which for such an export lies ahead of its submit. Only the
-- column's comment changes; jobs in flight keep their queued_at.
-- depends: 0038.imports_by_scope

COMMENT ON COLUMN pgjobs.jobs.queued_at IS
'The job''s place in the queue: when it last joined it (submitted, or handed back at the end of a runner''s budget), or, for an export submitted while exports of its scope were pending, an hour after the latest of them (turns between tenants). Claims take jobs by priority, then this, then id.';
