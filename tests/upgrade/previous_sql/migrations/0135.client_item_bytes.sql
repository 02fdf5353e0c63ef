-- pgjobs 0135: a client's fan-out items have a ceiling in bytes over all its
-- kept jobs, not only per job. max_item_bytes_per_job (0054) bounds one
-- job at 64 MiB, but a client may keep max_jobs_kept_per_client (100,000)
-- jobs until pgjobs.prune, so one tenant could fill the database's disk
-- with several TB of pgjobs.job_items through submit_items and add_items
-- alone, and a delete's exclude list (up to 100,000 keys of any length,
-- kept in pgjobs.job_exclusions) as much. Both now pass
-- pgjobs._require_client_item_room, which sums the item_bytes of the
-- submitter's kept jobs (set_defaults' max_item_bytes_per_client, default
-- 1 GiB); a delete keeps its list's bytes there from now on;
-- this partial index keeps that sum to the client's fan-out jobs (an
-- index-only scan), whatever number of other jobs it keeps. No data
-- changes; jobs in flight run as they are (a fan-out job made before 0054,
-- item_bytes NULL, is counted from its next add_items on; a delete made
-- before 0135 is not counted).
-- depends: 0091.ddl_fence

CREATE INDEX IF NOT EXISTS jobs_client_item_bytes_idx ON pgjobs.jobs (submitted_by_oid)
    INCLUDE (item_bytes) WHERE item_bytes IS NOT NULL;

COMMENT ON COLUMN pgjobs.jobs.item_bytes IS
'The bytes of a job''s inputs kept beside it: a fan-out job''s items given so far, as the JSON '
'text of the arrays passed to submit_items and add_items (pgjobs._items_add; NULL before its '
'first add since 0054), or a delete''s exclude list kept in pgjobs.job_exclusions (the '
'octet_length of its keys, since 0135). What max_item_bytes_per_client sums.';
