-- pgjobs 0043: an import's checkpoint records which rejects object the job
-- provably created (`rejects_created`, set by pgjobs.import_rejects_created
-- once its conditional create succeeded): only that one is written over by
-- a later attempt, deleted by pgjobs.prune, or queued for deletion when a
-- new name replaces it. A name without it may be another pgjobs database's
-- object (a worker killed after its create found that object there, before
-- the checkpoint stopped naming it): the next attempt creates it
-- conditionally again, and pruning leaves it. Jobs of the previous release
-- whose result names the checkpoint's rejects object wrote it (a result
-- names it only once written): recorded as created here, so that a retry
-- writes its rejects there again and pruning still deletes it. Any other
-- name of the previous release is treated as not created. No column
-- changes; data only.
-- depends: 0041.storage_leftovers

UPDATE pgjobs.jobs j
   SET checkpoint = j.checkpoint || jsonb_build_object('rejects_created',
                                                       j.checkpoint -> 'rejects_uri')
 WHERE j.kind = 'import'
   AND jsonb_typeof(j.checkpoint -> 'rejects_uri') = 'string'
   AND j.checkpoint -> 'rejects_created' IS NULL
   AND j.result ->> 'rejects_uri' = j.checkpoint ->> 'rejects_uri';

COMMENT ON COLUMN pgjobs.storage_deletions.upload IS
'NULL: the object at uri is deleted. {"rejects_sha256": ...}: an import''s rejects object its '
'job may have created without recording so (pgjobs.prune): deleted only if it holds exactly the '
'bytes of that SHA-256, else left (another''s). Otherwise the checkpointed state of an upload to '
'uri that an export left when it ended without its worker (an S3 multipart upload id, a '
'temporary file, staged parts; {"join": ...}: the join of a parallel export): the worker removes '
'what it names, never the object at uri.';
