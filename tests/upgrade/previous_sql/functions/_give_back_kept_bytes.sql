CREATE OR REPLACE FUNCTION pgjobs._give_back_kept_bytes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The trigger of pgjobs.jobs after a DELETE (pgjobs.prune, an
-- administrator's own) or a TRUNCATE: gives the bytes the deleted jobs
-- counted (their kept_bytes, pgjobs._keep_client_bytes) back to their
-- submitters' running totals, so a client's total is always what its kept
-- jobs hold. Statement level, one UPDATE a statement whatever its rows.
-- Locks: the submitters' rows of pgjobs.client_room_locks.
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE pgjobs.client_room_locks SET kept_bytes = 0 WHERE kept_bytes <> 0;
        RETURN NULL;
    END IF;
    -- Several clients' totals (an administrator's DELETE): locked in
    -- submitter order, as pgjobs.prune does, so two such statements wait
    -- for each other rather than deadlock.
    PERFORM 1 FROM pgjobs.client_room_locks l
     WHERE l.submitter_oid IN (SELECT o.submitted_by_oid FROM gone o WHERE o.kept_bytes <> 0)
     ORDER BY l.submitter_oid
       FOR NO KEY UPDATE;
    UPDATE pgjobs.client_room_locks l
       SET kept_bytes = greatest(l.kept_bytes - g.bytes, 0)
      FROM (SELECT o.submitted_by_oid, sum(o.kept_bytes) AS bytes
              FROM gone o
             WHERE o.kept_bytes IS NOT NULL AND o.submitted_by_oid IS NOT NULL
             GROUP BY o.submitted_by_oid) g
     WHERE l.submitter_oid = g.submitted_by_oid;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._give_back_kept_bytes() IS
'Trigger of pgjobs.jobs (after DELETE, TRUNCATE): gives the deleted jobs'' kept_bytes back to '
'their submitters'' running totals (max_item_bytes_per_client).';

CREATE OR REPLACE TRIGGER jobs_give_back_kept_bytes AFTER DELETE ON pgjobs.jobs
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs._give_back_kept_bytes();
CREATE OR REPLACE TRIGGER jobs_give_back_kept_bytes_truncate AFTER TRUNCATE ON pgjobs.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs._give_back_kept_bytes();
