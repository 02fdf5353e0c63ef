CREATE OR REPLACE FUNCTION pgjobs._require_submitter(
    p_job pgjobs.jobs,
    p_reg pgjobs.target_registry)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Run-time check of the role that submitted p_job: the engine and the worker
-- act on the target with pgjobs' rights, so a privilege revoked after the
-- submit (or a role dropped, or a row-level security policy turned on) must
-- stop the job before it touches another row. Called before every page of a
-- delete or backfill (pgjobs._run_page), every chunk of an export
-- (pgjobs.export_chunk_sql) and when an import starts (pgjobs.import_prepare;
-- each batch's statement checks the very columns it writes,
-- pgjobs._import_insert_sql). The privilege is the submit's
-- (pgjobs._kind_privilege); an import needs INSERT on its scope column
-- (column-level grants count) and, with on_duplicate update, UPDATE on some
-- column. Raises 42501 (pgjobs._require_role): the caller fails the job,
-- not retried. Locks nothing.
BEGIN
    IF p_job.kind = 'import' THEN
        PERFORM pgjobs._require_role(p_job.submitted_by, p_job.target, 'INSERT',
                                     ARRAY[p_reg.scope_column::text]);
        IF p_job.payload ->> 'on_duplicate' = 'update' THEN
            PERFORM pgjobs._require_role(p_job.submitted_by, p_job.target, 'UPDATE',
                                         '{}'::text[]);
            -- ... and SELECT on the columns ON CONFLICT DO UPDATE reads, as at submit.
            PERFORM pgjobs._require_role(p_job.submitted_by, p_job.target, 'SELECT',
                coalesce(pgjobs._import_conflict_columns(p_reg), '{}'::text[])
                || p_reg.scope_column::text);
        END IF;
    ELSE
        -- A delete or backfill reads the rows it selects: SELECT too, as at
        -- submit (one call for both: this runs before every page).
        PERFORM pgjobs._require_role(p_job.submitted_by, p_job.target,
            pgjobs._kind_privilege(p_job.kind)
            || CASE WHEN p_job.kind IN ('delete', 'backfill') THEN ',SELECT' ELSE '' END,
            NULL);
    END IF;
END
$$;
