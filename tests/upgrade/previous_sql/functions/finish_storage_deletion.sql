CREATE OR REPLACE FUNCTION pgjobs.finish_storage_deletion(p_id bigint, p_error text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Settles a claimed storage deletion: without p_error the object is gone
-- (or was already) and the row is deleted; with p_error the row stays,
-- keeps the error and is retried after an exponential backoff. Returns
-- false when the row no longer exists. Locks: the row.
BEGIN
    IF p_error IS NULL THEN
        DELETE FROM pgjobs.storage_deletions d WHERE d.id = p_id;
        RETURN FOUND;
    END IF;
    -- From 30 seconds, doubling per attempt.
    UPDATE pgjobs.storage_deletions d
       SET last_error = left(p_error, 2000),
           retry_at = now() + pgjobs._backoff(d.attempts) * 30
     WHERE d.id = p_id;
    RETURN FOUND;
END
$$;

COMMENT ON FUNCTION pgjobs.finish_storage_deletion(bigint, text) IS
'Settles a storage deletion claimed with pgjobs.claim_storage_deletions: without p_error the row '
'is removed; with it the error is kept and the deletion retried after a backoff.';
