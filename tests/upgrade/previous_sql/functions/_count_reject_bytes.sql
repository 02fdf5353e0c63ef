CREATE OR REPLACE FUNCTION pgjobs._count_reject_bytes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The trigger of pgjobs.import_rejects after an INSERT or a DELETE: the
-- bytes of the rejects written (octet_length of reason and record, as
-- max_reject_bytes_per_job counts them) are added to their import's
-- kept_bytes and its submitter's running total (what
-- max_item_bytes_per_client bounds; pgjobs.import_batch keeps a batch's
-- rejects within the room left before it writes them, and fails the job
-- when they would not fit), those of rejects forgotten (pgjobs.import_prepare
-- deletes a batch's rejects past the checkpoint) given back. Rejects that
-- go with their job (ON DELETE CASCADE) are given back by the jobs trigger
-- (pgjobs._give_back_kept_bytes): their job row is gone here. At most what
-- the job counted is given back (rejects kept before migration 0146 were
-- not counted). Locks: the jobs' rows and their submitters' rows of
-- pgjobs.client_room_locks.
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH s AS (
            SELECT r.job_id, sum(octet_length(r.reason) + coalesce(octet_length(r.record), 0))
                       AS bytes
              FROM added r GROUP BY r.job_id),
        u AS (
            UPDATE pgjobs.jobs j SET kept_bytes = coalesce(j.kept_bytes, 0) + s.bytes
              FROM s
             WHERE j.id = s.job_id AND j.submitted_by_oid IS NOT NULL
            RETURNING j.submitted_by_oid, s.bytes)
        INSERT INTO pgjobs.client_room_locks AS l (submitter_oid, kept_bytes)
        SELECT u.submitted_by_oid, sum(u.bytes) FROM u GROUP BY u.submitted_by_oid
        ON CONFLICT (submitter_oid) DO UPDATE SET kept_bytes = l.kept_bytes + EXCLUDED.kept_bytes;
    ELSE
        WITH s AS (
            SELECT j.id, j.submitted_by_oid,
                   least(coalesce(j.kept_bytes, 0),
                         sum(octet_length(r.reason) + coalesce(octet_length(r.record), 0)))
                       AS bytes
              FROM removed r JOIN pgjobs.jobs j ON j.id = r.job_id
             WHERE j.submitted_by_oid IS NOT NULL
             GROUP BY j.id, j.submitted_by_oid, j.kept_bytes),
        u AS (
            UPDATE pgjobs.jobs j SET kept_bytes = j.kept_bytes - s.bytes
              FROM s
             WHERE j.id = s.id AND s.bytes > 0
            RETURNING s.submitted_by_oid, s.bytes)
        UPDATE pgjobs.client_room_locks l
           SET kept_bytes = greatest(l.kept_bytes - g.bytes, 0)
          FROM (SELECT u.submitted_by_oid, sum(u.bytes) AS bytes
                  FROM u GROUP BY u.submitted_by_oid) g
         WHERE l.submitter_oid = g.submitted_by_oid;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._count_reject_bytes() IS
'Trigger of pgjobs.import_rejects (after INSERT, DELETE): counts the bytes of an import''s '
'rejects toward its submitter''s running total (max_item_bytes_per_client), and gives back '
'those of rejects forgotten.';

CREATE OR REPLACE TRIGGER import_rejects_count_bytes AFTER INSERT ON pgjobs.import_rejects
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs._count_reject_bytes();
CREATE OR REPLACE TRIGGER import_rejects_give_back_bytes AFTER DELETE ON pgjobs.import_rejects
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs._count_reject_bytes();
