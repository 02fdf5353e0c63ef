CREATE OR REPLACE FUNCTION pgjobs._require_same_columns(p_job pgjobs.jobs)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- For an export's chunk and an import's batch: holds the job's target to the
-- end of the transaction (pgjobs._hold_target) and raises when a column the
-- job was submitted against was renamed, dropped or retyped since
-- (pgjobs._columns_changed: 42703 or 42804, which fail the job for good):
-- its column list, predicate and mapping name the old columns. The runner's
-- pages make the same check (pgjobs._run_page). Locks: the target, ACCESS
-- SHARE.
DECLARE
    v_changed record;
BEGIN
    PERFORM pgjobs._hold_target(p_job.target);
    SELECT c.message, c.errcode INTO v_changed
      FROM pgjobs._columns_changed(p_job.target, p_job.target_columns) c;
    IF v_changed.message IS NOT NULL THEN
        RAISE EXCEPTION '% since job % was submitted', v_changed.message, p_job.id
            USING ERRCODE = v_changed.errcode,
                  HINT = format('The %s job was compiled against the old columns: submit it '
                                'again%s.', p_job.kind,
                                CASE p_job.kind WHEN 'import'
                                     THEN ' (the rows of its committed batches stay)' END);
    END IF;
END
$$;
