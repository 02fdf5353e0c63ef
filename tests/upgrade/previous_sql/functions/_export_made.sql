CREATE OR REPLACE FUNCTION pgjobs._export_made(
    p_id bigint,
    p_checkpoint jsonb)
RETURNS TABLE (uri text, upload jsonb)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The storage objects export p_id made or may have made, recorded or not,
-- each with what proves it the job's, in the forms a worker's storage
-- deletion reads (pgjobs.claim_storage_deletions): `export_digests`, the
-- part digests checkpointed as its parts were streamed (the object is
-- deleted only while it reads back as exactly those bytes), or
-- `object_sha256`, the digest of a Parquet file's bytes (deleted only while
-- it holds them). Anything else at one of these keys is another's and
-- stays. From p_checkpoint (the job's) and its parts' rows
-- (pgjobs.export_parts, read from the caller's snapshot):
-- * a CSV or JSON Lines object (the whole export's, or a part's) once its
--   checkpoint entered finalizing with its digests, whether or not it
--   records the write (`created`): a worker killed between its conditional
--   write and that record, or after it;
-- * a parallel export's joined object once every part succeeded: the
--   parts' digests in order (a coordinator killed during its join, before
--   or after it recorded the joined object);
-- * a Parquet file recorded (`files`, a checkpoint's or a part result's),
--   being written (`writing`) or dropped by a read-back (`unrecorded`).
-- What pgjobs._queue_export_objects queues when an export is canceled; never
-- a folder. Locks nothing.
    SELECT DISTINCT m.uri, m.upload
      FROM (SELECT c.ck ->> 'uri', jsonb_build_object('export_digests', c.ck -> 'digests')
              FROM (SELECT p_checkpoint
                    UNION ALL
                    SELECT p.checkpoint FROM pgjobs.export_parts p WHERE p.job_id = p_id) c(ck)
             WHERE jsonb_typeof(c.ck) = 'object'
               AND c.ck ->> 'phase' = 'finalizing'
               AND jsonb_typeof(c.ck -> 'digests') = 'array'
               AND jsonb_array_length(c.ck -> 'digests') > 0
            UNION ALL
            SELECT p_checkpoint ->> 'uri',
                   jsonb_build_object('export_digests',
                       jsonb_agg(jsonb_build_array(p.result -> 'bytes', p.result -> 'sha256')
                                 ORDER BY p.part))
              FROM pgjobs.export_parts p
             WHERE p.job_id = p_id AND jsonb_typeof(p_checkpoint) = 'object'
               AND p_checkpoint -> 'parallel' = 'true'::jsonb
            HAVING count(*) > 0
               AND bool_and(p.status = 'succeeded'
                            AND jsonb_typeof(p.result -> 'bytes') = 'number'
                            AND jsonb_typeof(p.result -> 'sha256') = 'string')
            UNION ALL
            SELECT f.value ->> 'uri', jsonb_build_object('object_sha256', f.value -> 'sha256')
              FROM (SELECT p_checkpoint
                    UNION ALL
                    SELECT p.checkpoint FROM pgjobs.export_parts p WHERE p.job_id = p_id
                    UNION ALL
                    SELECT p.result FROM pgjobs.export_parts p WHERE p.job_id = p_id) c(ck)
             CROSS JOIN LATERAL jsonb_array_elements(
                       CASE WHEN jsonb_typeof(c.ck) <> 'object' THEN '[]'::jsonb
                            WHEN jsonb_typeof(c.ck -> 'files') = 'array'
                                 AND jsonb_typeof(c.ck -> 'unrecorded') = 'array'
                            THEN (c.ck -> 'files') || (c.ck -> 'unrecorded')
                            WHEN jsonb_typeof(c.ck -> 'files') = 'array' THEN c.ck -> 'files'
                            WHEN jsonb_typeof(c.ck -> 'unrecorded') = 'array'
                            THEN c.ck -> 'unrecorded'
                            ELSE '[]'::jsonb END) f
             WHERE jsonb_typeof(f.value) = 'object'
               AND jsonb_typeof(f.value -> 'sha256') = 'string'
            UNION ALL
            SELECT c.ck ->> 'writing', jsonb_build_object('object_sha256', c.ck -> 'writing_sha256')
              FROM (SELECT p_checkpoint
                    UNION ALL
                    SELECT p.checkpoint FROM pgjobs.export_parts p WHERE p.job_id = p_id) c(ck)
             WHERE jsonb_typeof(c.ck) = 'object'
               AND jsonb_typeof(c.ck -> 'writing') = 'string'
               AND jsonb_typeof(c.ck -> 'writing_sha256') = 'string'
           ) m(uri, upload)
     WHERE coalesce(m.uri, '') <> '' AND right(m.uri, 1) <> '/';
$$;

COMMENT ON FUNCTION pgjobs._export_made(bigint, jsonb) IS
'The objects an export and its parts made or may have made (recorded or not), each with the '
'digests that prove it the job''s: what pgjobs._queue_export_objects queues when the export is '
'canceled.';
