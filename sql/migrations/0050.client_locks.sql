-- pgjobs 0050: a client's ceilings hold under concurrency. The counts of
-- pgjobs._require_client_room (max_pending_per_client,
-- max_kinds_per_client) took no lock: sessions of one client submitting
-- at once, each in a transaction not yet committed, did not see each
-- other's jobs and together passed a ceiling. Each submit and retry of a
-- client who is not an administrator now writes this table's row of the
-- client (made on first use) before it counts, so the client's
-- submitting transactions count one after the other, each seeing the jobs
-- of those before it. A row, not an advisory lock: any role may take any
-- advisory lock and hold it, which would hang another client's submits;
-- no client can write or lock these rows. One row per client role that
-- ever submitted (a few dozen bytes each); rows are kept. No data changes;
-- jobs in flight are not touched.
-- depends: 0047.client_room

CREATE TABLE pgjobs.client_locks (
    submitter_oid oid NOT NULL PRIMARY KEY
);

COMMENT ON TABLE pgjobs.client_locks IS
'One row per client role (by oid) that submitted or retried a job: writing it serialises that '
'client''s submits and retries, so its ceilings (max_pending_per_client, max_kinds_per_client) '
'are counted exactly (pgjobs._require_client_room). Written only through pgjobs functions.';
