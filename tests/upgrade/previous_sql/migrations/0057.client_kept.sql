-- pgjobs 0057: a client's kept jobs are bounded. A finished job (succeeded,
-- failed, canceled) keeps its row, payload, items and import rejects until
-- pgjobs.prune's retention, and counted toward no ceiling: a client that
-- submitted, canceled and submitted again in a loop was bounded by the
-- retention only. Every submit of every kind now counts the client's jobs
-- of every status (pgjobs._require_client_kept_room) against set_defaults'
-- max_jobs_kept_per_client. This index counts them without reading other
-- clients' jobs, and the count stops at the ceiling.
-- And a client's ceilings hold under concurrency: two sessions of one
-- client that each saw N-1 jobs under a ceiling of N both passed. Near a
-- ceiling the checks now lock the client's row of client_room_locks (made
-- on first use; pgjobs._lock_client_room) and count again; far from it they
-- lock nothing, so a client's open transaction holds back none of its other
-- submits. A row, not an advisory lock, which any role could take and hold.
-- One row per client role that came near a ceiling; rows are kept. No data
-- changes; jobs in flight are counted as they are.
-- depends: 0054.item_bytes

CREATE INDEX jobs_submitter_oid_idx ON pgjobs.jobs (submitted_by_oid);

CREATE TABLE pgjobs.client_room_locks (
    submitter_oid oid NOT NULL PRIMARY KEY
);

COMMENT ON TABLE pgjobs.client_room_locks IS
'One row per client role (by oid) that came near one of its ceilings: its row lock serialises '
'that client''s submits and retries while near them, so the ceilings are counted exactly '
'(pgjobs._lock_client_room). Written only through pgjobs functions.';
