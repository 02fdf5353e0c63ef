CREATE OR REPLACE FUNCTION pgjobs.claim_storage_deletions(
    p_limit integer DEFAULT 10,
    p_hold interval DEFAULT '5 minutes')
RETURNS SETOF pgjobs.storage_deletions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Hands up to p_limit queued storage deletions (objects of pruned export
-- jobs) to the calling worker, oldest first. Each is hidden from other
-- workers for p_hold (its retry_at moves forward) and its attempts counted;
-- the worker deletes the object and settles it with
-- pgjobs.finish_storage_deletion. A worker that dies leaves the row to be
-- claimed again after p_hold. Rows that failed 10 times are left for an
-- operator (last_error says why).
-- Locks: FOR UPDATE SKIP LOCKED on the rows it takes.
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 1000, not %', p_limit
            USING ERRCODE = '22023', HINT = 'Claim from 1 to 1000 at a time.';
    END IF;
    IF p_hold IS NULL OR p_hold < interval '1 second' THEN
        RAISE EXCEPTION 'hold must be at least 1 second, not %', p_hold
            USING ERRCODE = '22023', HINT = 'The default is 5 minutes.';
    END IF;
    RETURN QUERY
        WITH picked AS (
            SELECT d.id FROM pgjobs.storage_deletions d
             WHERE d.retry_at <= now() AND d.attempts < 10
             ORDER BY d.id
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED)
        UPDATE pgjobs.storage_deletions d
           SET attempts = d.attempts + 1,
               retry_at = now() + p_hold
          FROM picked
         WHERE d.id = picked.id
        RETURNING d.*;
END
$$;

COMMENT ON FUNCTION pgjobs.claim_storage_deletions(integer, interval) IS
'Claims up to p_limit queued storage deletions (objects of pruned exports) for a worker, hiding '
'them from other workers for p_hold (FOR UPDATE SKIP LOCKED). Settle each with '
'pgjobs.finish_storage_deletion.';
