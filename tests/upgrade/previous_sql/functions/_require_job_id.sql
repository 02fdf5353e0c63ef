CREATE OR REPLACE FUNCTION pgjobs._require_job_id(p_id bigint)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A NULL job id is a bad argument (22023), not an unknown job: "job <NULL>
-- does not exist" (P0002) sent the caller looking for a job. The one check
-- of every function that looks a job up by the id it is given and says
-- P0002 when there is none: pgjobs._controlled_job (add_items, cancel,
-- pause, resume, retry), pgjobs._claim_id (pgjobs.run_job), claim_export,
-- claim_import, export_chunk_sql, export_parquet_columns. Locks nothing.
BEGIN
    IF p_id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null' USING ERRCODE = '22023',
            HINT = 'Pass the id a submit returned (SELECT id FROM pgjobs.jobs lists them).';
    END IF;
END
$$;
