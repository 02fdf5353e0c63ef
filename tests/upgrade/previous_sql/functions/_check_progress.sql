CREATE OR REPLACE FUNCTION pgjobs._check_progress(p_done bigint, p_checkpoint jsonb)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The progress a worker reports with a heartbeat (pgjobs.heartbeat,
-- pgjobs.export_part_heartbeat): done a count (0 or more) and checkpoint a
-- JSON object, each NULL to keep the stored one. 22023 otherwise, checked
-- before any fence (a worker's bug, not a lost lease): a job showed -5 rows
-- done, or an export's done, the sum of its parts', went below its rows.
-- One rule for both, so a part cannot report what a job may not. Locks
-- nothing.
BEGIN
    IF p_done < 0 THEN
        RAISE EXCEPTION 'done must be a count of rows or items (0 or more), not %', p_done
            USING ERRCODE = '22023', HINT = 'Pass NULL to leave the progress as it is.';
    END IF;
    IF jsonb_typeof(p_checkpoint) <> 'object' THEN
        RAISE EXCEPTION 'checkpoint must be a JSON object, not %', p_checkpoint
            USING ERRCODE = '22023',
            HINT = 'For example {"cursor": "..."}; pass NULL to keep the stored one.';
    END IF;
END
$$;
