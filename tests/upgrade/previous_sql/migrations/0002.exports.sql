-- pgjobs 0002: the storage deletion queue gets a retry time, so that workers
-- can claim deletions (pgjobs.claim_storage_deletions) and back off after a
-- failure without rewriting queued_at.
-- depends: 0001.initial

ALTER TABLE pgjobs.storage_deletions
    ADD COLUMN retry_at timestamptz NOT NULL DEFAULT now();

COMMENT ON TABLE pgjobs.storage_deletions IS
    'Objects of pruned export jobs, waiting for a worker to delete them from storage. '
    'Claimed with pgjobs.claim_storage_deletions, settled with pgjobs.finish_storage_deletion.';
