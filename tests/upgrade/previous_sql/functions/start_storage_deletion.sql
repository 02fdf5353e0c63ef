CREATE OR REPLACE FUNCTION pgjobs.start_storage_deletion(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether the worker may now remove the storage deletion p_id it claimed
-- (pgjobs.claim_storage_deletions): called in the transaction in which it
-- removes it and settles it (pgjobs.finish_storage_deletion), it locks the
-- row until that transaction ends. An upload leftover's job may have been
-- taken back by pgjobs.retry since the claim (queued, running or paused
-- again: it resumes that upload, and its own worker removes it at its
-- end): false, and the row is dropped. pgjobs.retry drops the rows of its
-- job under the same lock, and is refused (55006) while a removal holds
-- one: an upload a retried attempt resumes is never removed under it.
-- False also when the row is gone (the retry dropped it first). Locks:
-- the row, FOR UPDATE, until the caller's transaction ends.
DECLARE
    v_row pgjobs.storage_deletions;
BEGIN
    SELECT * INTO v_row FROM pgjobs.storage_deletions d WHERE d.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF v_row.upload IS NOT NULL
       AND EXISTS (SELECT FROM pgjobs.jobs j
                    WHERE j.id = v_row.job_id AND j.status IN ('queued', 'running', 'paused')) THEN
        DELETE FROM pgjobs.storage_deletions d WHERE d.id = p_id;
        RETURN false;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.start_storage_deletion(bigint) IS
'Workers: lock a storage deletion claimed with pgjobs.claim_storage_deletions for the '
'transaction that removes it and settles it (pgjobs.finish_storage_deletion). False (nothing to '
'remove) when the row is gone or its job was retried since the claim (the row is dropped): '
'pgjobs.retry is refused (55006) while a removal of its job''s upload holds a row.';
