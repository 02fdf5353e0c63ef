CREATE OR REPLACE FUNCTION pgjobs._queue_export_parts_joined(
    p_id bigint,
    p_result jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Export p_id, a parallel CSV or JSON Lines one, has just succeeded with
-- p_result (pgjobs.complete, in its transaction): its parts' objects, now
-- joined into result.uri, and what its parts' and its join's uploads left
-- (pgjobs._export_leftovers) are queued in pgjobs.storage_deletions. Its
-- coordinator removes them right after the complete; one killed before
-- that left them until pgjobs.prune. A part object is queued with the part
-- digests its checkpoint holds (deleted only while it reads back as those
-- bytes: anything else at its key is another's); an object the result
-- names is never queued. Any other export, or a job of another kind: nothing.
-- Returns how many were queued. Locks: nothing beyond the rows it inserts.
DECLARE
    v_queued integer;
    v_more integer;
BEGIN
    IF NOT (jsonb_typeof(p_result -> 'parallel_parts') = 'number'
            AND jsonb_typeof(p_result -> 'uris') = 'array'
            AND p_result ->> 'format' IS DISTINCT FROM 'parquet'
            AND EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = p_id AND j.kind = 'export')) THEN
        RETURN 0;
    END IF;
    INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
    SELECT DISTINCT p.checkpoint ->> 'uri', p_id,
           jsonb_build_object('export_digests', p.checkpoint -> 'digests')
      FROM pgjobs.export_parts p
     WHERE p.job_id = p_id
       AND jsonb_typeof(p.checkpoint) = 'object'
       AND p.checkpoint ->> 'phase' = 'finalizing'
       AND jsonb_typeof(p.checkpoint -> 'digests') = 'array'
       AND jsonb_array_length(p.checkpoint -> 'digests') > 0
       AND coalesce(p.checkpoint ->> 'uri', '') <> ''
       AND right(p.checkpoint ->> 'uri', 1) <> '/'
       AND NOT (p_result -> 'uris') ? (p.checkpoint ->> 'uri');
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    INSERT INTO pgjobs.storage_deletions (uri, job_id, upload)
    SELECT l.uri, p_id, l.upload
      FROM pgjobs._export_leftovers(p_id, (SELECT j.checkpoint FROM pgjobs.jobs j
                                            WHERE j.id = p_id)) l;
    GET DIAGNOSTICS v_more = ROW_COUNT;
    RETURN v_queued + v_more;
END
$$;

COMMENT ON FUNCTION pgjobs._queue_export_parts_joined(bigint, jsonb) IS
'Queues the part objects (and upload leftovers) of a parallel CSV or JSON Lines export that has '
'just succeeded, for a worker to delete while each reads back as its part''s digests.';
