-- pgjobs 0047: a client's pending jobs and job kinds are bounded. A
-- submitter who is not an administrator had no limit on the jobs it kept
-- queued, running or paused across scopes (max_pending_writers bounds the
-- writers of one scope only; exports and custom kinds had none), nor on the
-- distinct custom kinds it made, each a label value of every series of
-- /metrics and a row group of pgjobs.stats(). Every submit and retry now
-- counts the client's pending jobs and kinds (pgjobs._require_client_room)
-- against set_defaults' max_pending_per_client and max_kinds_per_client,
-- under this table's row of the client, so that two sessions of one client
-- cannot both take its last place. The index counts them without reading
-- other clients' jobs, and stops at the ceiling. No data changes; jobs in
-- flight are counted as they are.
-- depends: 0043.rejects_created

CREATE TABLE pgjobs.client_locks (
    submitter oid PRIMARY KEY
);

COMMENT ON TABLE pgjobs.client_locks IS
'One row per client role (by oid) that submitted or retried a job: its row lock serialises that '
'client''s submits and retries while they count its pending jobs and kinds '
'(pgjobs._require_client_room). Written only through pgjobs functions.';

CREATE INDEX jobs_pending_submitter_idx ON pgjobs.jobs (submitted_by_oid, kind)
    WHERE status IN ('queued', 'running', 'paused');
