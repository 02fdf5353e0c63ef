CREATE OR REPLACE FUNCTION pgjobs._import_after(p_job pgjobs.jobs, p_pending boolean)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The first import of p_job's scope placed after p_job's submit (a later
-- import, or an earlier one retried since) that has written rows, or, with
-- p_pending, that may still write them (queued, running, paused); NULL when none, or when p_job is not a
-- delete or backfill. Such a job keeps the cutoff of its submit and judges
-- rows by their created_at, and an import writes the created_at its source
-- gives: the rows it dated before that cutoff would read as rows that
-- existed at the submit, deleted or changed, the others spared. Asked by
-- pgjobs._retry_as (p_pending: refused) and at every attempt's start,
-- pgjobs._may_start_attempt (written only: a writer that was not due yet
-- held no place in the gate, pgjobs._writer_may_start, so a later import
-- may have run first; the job fails). Written: rows it inserted or
-- updated, by its running counts (checkpoint) or its result; an import
-- whose counts are not there (none yet) counts as written once it read
-- records (done) or succeeded. An import that succeeded writing no row
-- (an empty source, every record skipped or rejected) failed the job all
-- the same, its error saying it wrote rows (hV review). Locks nothing.
BEGIN
    IF NOT p_job.kind = ANY (pgjobs._engine_kinds()) THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT i.id
              FROM pgjobs.jobs i
             WHERE i.target = p_job.target AND i.scope = p_job.scope
               AND i.kind = 'import'
               AND coalesce(i.gate_order, i.id) > p_job.id
               AND (coalesce(greatest(
                            (i.checkpoint ->> 'inserted')::bigint
                            + (i.checkpoint ->> 'updated')::bigint,
                            (i.result ->> 'inserted')::bigint + (i.result ->> 'updated')::bigint),
                        CASE WHEN i.done > 0 OR i.status = 'succeeded' THEN 1 ELSE 0 END) > 0
                    OR (p_pending AND i.status IN ('queued', 'running', 'paused')))
             ORDER BY i.id
             LIMIT 1);
END
$$;
