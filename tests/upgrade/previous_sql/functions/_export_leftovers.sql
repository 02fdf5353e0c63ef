CREATE OR REPLACE FUNCTION pgjobs._export_leftovers(
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
-- The upload leftovers export p_id's checkpoint and its parts' name: each
-- checkpointed upload (its state: an S3 multipart upload id and part
-- ETags, a temporary file, a staged-parts folder) with the URI of the
-- object it writes, the job's own (a CSV or JSON Lines export) and each
-- part's of a parallel export (pgjobs.export_parts), and the join of a
-- parallel export under way ({"join": its state, "prefix": the
-- destination}: its temporary file, its open upload, its scratch objects).
-- Never an object: those are pgjobs._export_objects'. p_checkpoint is the
-- job's (passed: pgjobs.prune has deleted the row by then); the parts are
-- read from the caller's snapshot. Locks nothing.
    SELECT l.uri, l.upload
      FROM (SELECT p_checkpoint ->> 'uri', p_checkpoint -> 'upload'
             WHERE jsonb_typeof(p_checkpoint -> 'upload') = 'object'
            UNION ALL
            SELECT p_checkpoint ->> 'uri',
                   jsonb_build_object('join', p_checkpoint -> 'join',
                                      'prefix', p_checkpoint -> 'prefix')
             WHERE jsonb_typeof(p_checkpoint -> 'join') = 'object'
               AND p_checkpoint -> 'join' <> '{}'::jsonb
            UNION ALL
            SELECT p.checkpoint ->> 'uri', p.checkpoint -> 'upload'
              FROM pgjobs.export_parts p
             WHERE p.job_id = p_id AND jsonb_typeof(p.checkpoint -> 'upload') = 'object'
           ) l(uri, upload)
     WHERE l.uri IS NOT NULL AND l.uri <> '' AND l.upload <> '{}'::jsonb;
$$;

COMMENT ON FUNCTION pgjobs._export_leftovers(bigint, jsonb) IS
'The checkpointed uploads of an export and of its parts (multipart uploads, temporary files, '
'staged parts, a join under way), each with its object''s URI: what pgjobs._queue_export_leftovers '
'queues for removal when the export ends without its worker.';
