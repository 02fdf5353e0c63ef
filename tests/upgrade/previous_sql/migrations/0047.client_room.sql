-- pgjobs 0047: a client's pending jobs and job kinds are bounded. A
-- submitter who is not an administrator had no limit on the jobs it kept
-- queued, running or paused across scopes (max_pending_writers bounds the
-- writers of one scope only; exports and custom kinds had none), nor on the
-- distinct custom kinds it made, each a label value of every series of
-- /metrics and a row group of pgjobs.stats(). Every submit and retry now
-- counts the client's pending jobs and kinds (pgjobs._require_client_room)
-- against set_defaults' max_pending_per_client and max_kinds_per_client.
-- This index counts them without reading other clients' jobs, and stops
-- at the ceiling. No data changes; jobs in flight are counted as they are.
-- depends: 0043.rejects_created

CREATE INDEX jobs_pending_submitter_idx ON pgjobs.jobs (submitted_by_oid, kind)
    WHERE status IN ('queued', 'running', 'paused');
