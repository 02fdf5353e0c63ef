CREATE OR REPLACE FUNCTION pgjobs._export_parts_done(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The progress of a parallel export: its done is the sum of its parts'.
-- Locks: the job row.
BEGIN
    UPDATE pgjobs.jobs j
       SET done = (SELECT coalesce(sum(p.done), 0) FROM pgjobs.export_parts p
                    WHERE p.job_id = p_id),
           updated_at = now()
     WHERE j.id = p_id AND j.status = 'running';
END
$$;
