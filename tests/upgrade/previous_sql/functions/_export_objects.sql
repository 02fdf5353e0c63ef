CREATE OR REPLACE FUNCTION pgjobs._export_objects(
    p_id bigint,
    p_result jsonb,
    p_checkpoint jsonb)
RETURNS SETOF text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The storage objects export p_id wrote, for pgjobs.prune to queue for
-- deletion, each once: its result's (result.uris, else result.uri: a
-- succeeded export), and those its checkpoint records (a Parquet export's
-- files; a whole CSV or JSON Lines export's object once the checkpoint
-- records it created, `created` (or `sha256`, as a release before that
-- recorded it): visible even if the job never completed) and each of its
-- parts records (pgjobs.export_parts: a part's object,
-- its result's or one its checkpoint records created, or its Parquet
-- files), whatever the job's status. A checkpoint's `uri` without that
-- record is only where the object was to go: an upload that never
-- finished made nothing there, and whatever is at that key is another's
-- (the export's final write is conditional: it never replaces an object),
-- so it is never returned; nor is a Parquet file named as being written
-- (`writing`) or dropped (`unrecorded`) without a record that it was made:
-- pgjobs.prune queues those with the digest of the bytes the job wrote there,
-- and a worker deletes one only while it holds them. A failed or canceled export has no result, yet its
-- files are there when no worker cleaned up after it (one SIGKILLed, then
-- canceled or out of attempts by pgjobs._rescue_expired); nothing else
-- removes them (the worker's sweep takes temporary files and staged parts
-- only). A folder (a Parquet export's checkpoint.uri, ending in '/') is no
-- object: never returned. p_result and p_checkpoint are the job's (passed:
-- prune has deleted the row by then); the parts are read from the caller's
-- snapshot. Locks nothing.
    SELECT DISTINCT u.uri
      FROM (SELECT r.value AS uri
              FROM jsonb_array_elements_text(
                       CASE WHEN jsonb_typeof(p_result -> 'uris') = 'array'
                            THEN p_result -> 'uris'
                            ELSE jsonb_build_array(p_result -> 'uri') END) r
            UNION ALL
            SELECT x.uri
              FROM (SELECT p_checkpoint, false
                    UNION ALL
                    SELECT p.checkpoint, false FROM pgjobs.export_parts p WHERE p.job_id = p_id
                    UNION ALL
                    SELECT p.result, true FROM pgjobs.export_parts p WHERE p.job_id = p_id
                   ) c(ck, made)
             CROSS JOIN LATERAL (VALUES
                     (CASE WHEN c.made
                                OR jsonb_typeof(c.ck -> 'created') = 'object'
                                OR jsonb_typeof(c.ck -> 'sha256') = 'string'
                           THEN c.ck ->> 'uri' END)) x(uri)
             WHERE jsonb_typeof(c.ck) = 'object'
            UNION ALL
            SELECT f.value ->> 'uri'
              FROM (SELECT p_checkpoint
                    UNION ALL
                    SELECT p.checkpoint FROM pgjobs.export_parts p WHERE p.job_id = p_id
                    UNION ALL
                    SELECT p.result FROM pgjobs.export_parts p WHERE p.job_id = p_id) c(ck)
             CROSS JOIN LATERAL jsonb_array_elements(
                       CASE WHEN jsonb_typeof(c.ck -> 'files') = 'array'
                            THEN c.ck -> 'files' ELSE '[]'::jsonb END) f
             WHERE jsonb_typeof(f.value) = 'object') u
     WHERE u.uri IS NOT NULL AND u.uri <> '' AND right(u.uri, 1) <> '/';
$$;

COMMENT ON FUNCTION pgjobs._export_objects(bigint, jsonb, jsonb) IS
'The storage objects an export wrote (its result''s, its checkpoint''s and its parts''), '
'for pgjobs.prune to queue for deletion whatever way the export ended.';
