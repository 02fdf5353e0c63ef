CREATE OR REPLACE FUNCTION pgjobs.export_parquet_columns(p_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The Parquet columns of export job p_id, in output order, as a JSON array of
-- {"name", "arrow"} (pgjobs._parquet_column decides the type from the
-- column's type now) plus, for a document field listed in `columns`,
-- "struct" (the struct column it belongs to: the document column's name, or
-- "<name>_fields" when the document column itself is exported too) and
-- "field" (its path, the struct's child name). Fields are strings as CSV
-- writes them (strings bare, other values as JSON text). The worker builds
-- its Arrow schema from this and from nothing else. Raises P0002 for an
-- unknown job, 22023 for a job that is not a Parquet export, 42703 when a
-- column resolved at submit is gone. Locks nothing.
DECLARE
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_name text;
    v_type oid;
    v_typmod integer;
    v_struct text;
    v_out jsonb := '[]'::jsonb;
BEGIN
    PERFORM pgjobs._require_job_id(p_id);  -- 22023 for NULL, not P0002
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002',
            HINT = 'Finished jobs are pruned after the retention period.';
    END IF;
    IF v_job.kind <> 'export' OR v_job.payload ->> 'format' IS DISTINCT FROM 'parquet' THEN
        RAISE EXCEPTION 'job % is not a Parquet export', p_id
            USING ERRCODE = '22023',
            HINT = 'Submit one with pgjobs.submit_export(..., ''{"format": "parquet"}'').';
    END IF;
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = v_job.target;
    IF v_reg.document_column IS NOT NULL THEN
        v_struct := CASE WHEN v_job.payload -> 'columns' ? v_reg.document_column::text
                         THEN v_reg.document_column || '_fields'
                         ELSE v_reg.document_column END;
    END IF;
    FOR v_name IN
        SELECT c.value FROM jsonb_array_elements_text(v_job.payload -> 'columns') c
    LOOP
        IF v_job.payload -> 'document_fields' ? v_name THEN
            v_out := v_out || jsonb_build_array(jsonb_build_object(
                'name', v_name, 'arrow', 'string', 'struct', v_struct, 'field', v_name));
            CONTINUE;
        END IF;
        SELECT a.atttypid, a.atttypmod INTO v_type, v_typmod
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = v_job.target AND a.attname = v_name
           AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of % is gone since the export was submitted', v_name,
                            v_job.target
                USING ERRCODE = '42703', HINT = 'Submit the export again.';
        END IF;
        v_out := v_out || jsonb_build_array(jsonb_build_object(
            'name', v_name, 'arrow', (pgjobs._parquet_column(v_type, v_typmod, 'x')).arrow));
    END LOOP;
    RETURN v_out;
END
$$;

COMMENT ON FUNCTION pgjobs.export_parquet_columns(bigint) IS
'The Parquet columns of a Parquet export job, in order: [{"name", "arrow"}, ...], plus "struct" '
'and "field" for document fields listed in columns (grouped into one struct column). The '
'worker builds its schema from this; pgjobs._parquet_column decides each type.';
