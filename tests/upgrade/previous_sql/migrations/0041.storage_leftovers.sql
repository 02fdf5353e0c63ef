-- pgjobs 0041: the storage deletion queue also carries an export's upload
-- leftovers: what a checkpointed upload left where its object was to go
-- (an open S3 multipart upload, a temporary file, staged parts), queued
-- when an export ends without its worker (canceled while queued or paused,
-- canceled or failed for good by a claim or a lease rescue, pruned:
-- pgjobs._queue_export_leftovers) so that a worker removes them at once
-- rather than the stale-upload sweep an hour later, or never. A row with
-- `upload` is such a leftover, the upload's checkpointed state, at `uri`;
-- one without is an object to delete, as before. Workers of the previous
-- release claim through the two-argument call, which hands out objects
-- only (they would delete the object at `uri`): the function now takes a
-- third argument, p_uploads (pgjobs.claim_storage_deletions re-creates it).
-- Rows already queued are objects; nothing in flight changes.
-- depends: 0040.tenant_turns

ALTER TABLE pgjobs.storage_deletions ADD COLUMN IF NOT EXISTS upload jsonb;

COMMENT ON COLUMN pgjobs.storage_deletions.upload IS
'NULL: the object at uri is deleted. Otherwise the checkpointed state of an upload to uri that '
'an export left when it ended without its worker (an S3 multipart upload id, a temporary '
'file, staged parts; {"join": ...}: the join of a parallel export): the worker removes what it '
'names, never the object at uri.';

COMMENT ON TABLE pgjobs.storage_deletions IS
    'Objects of pruned jobs, and upload leftovers of exports that ended without their worker, '
    'waiting for a worker to delete them from storage. '
    'Claimed with pgjobs.claim_storage_deletions, settled with pgjobs.finish_storage_deletion.';

DROP FUNCTION IF EXISTS pgjobs.claim_storage_deletions(integer, interval);
