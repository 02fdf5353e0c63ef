-- pgjobs 0022: pgjobs.stats() (issue 14) reads the unfinished jobs by
-- status, kind and target. The claim index (jobs_queued_idx) covers only
-- queued jobs and the lease index only running ones; this one covers every
-- job that is not finished (queued, running, paused) so the dashboard's
-- queue depth, oldest due job and throttled/paused lists cost what the
-- unfinished jobs cost, however many finished jobs the table holds until
-- prune removes them. Recent throughput reads finished jobs through
-- jobs_finished_idx (finished_at).
-- depends: 0018.writing_kind

CREATE INDEX jobs_unfinished_idx ON pgjobs.jobs (status, kind, target, run_at)
    WHERE status IN ('queued', 'running', 'paused');
