-- pgjobs 0057: a client's kept jobs are bounded. A finished job (succeeded,
-- failed, canceled) keeps its row, payload, items and import rejects until
-- pgjobs.prune's retention, and counted toward no ceiling: a client that
-- submitted, canceled and submitted again in a loop was bounded by the
-- retention only. Every submit of every kind now counts the client's jobs
-- of every status (pgjobs._require_client_kept_room) against set_defaults'
-- max_jobs_kept_per_client. This index counts them without reading other
-- clients' jobs, and the count stops at the ceiling. No data changes; jobs
-- in flight are counted as they are.
-- depends: 0054.item_bytes

CREATE INDEX jobs_submitter_oid_idx ON pgjobs.jobs (submitted_by_oid);
