CREATE OR REPLACE FUNCTION pgjobs.export_parts_redo(
    p_id bigint,
    p_worker text,
    p_parts integer[],
    p_why text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Queues again, from their first key and with a fresh checkpoint, the
-- succeeded parts p_parts of parallel export p_id whose objects are no
-- longer what they recorded (removed by a cancel, deleted or altered since):
-- only those parts are exported again, every other part keeps its object.
-- Their attempts start over; p_why is kept as their error (why they run
-- again). Called by the job's worker before or during the join, fenced on
-- its claim: p_worker must hold the job's unexpired lease, else 55000.
-- Returns how many parts were queued again. Locks: the job row, then the
-- parts' rows.
DECLARE
    v_count integer;
BEGIN
    PERFORM FROM pgjobs.jobs j
     WHERE j.id = p_id AND j.kind = 'export' AND j.worker = p_worker
       AND j.status = 'running' AND j.lease_expires_at > now()
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RAISE EXCEPTION 'job % is not an export running under %', p_id, p_worker
            USING ERRCODE = '55000',
            HINT = 'Only the worker holding the job''s lease re-queues its parts; a worker '
                   'whose lease was taken over stops.';
    END IF;
    UPDATE pgjobs.export_parts p
       SET status = 'queued', attempts = 0, checkpoint = NULL, result = NULL, done = 0,
           error = p_why, worker = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE p.job_id = p_id AND p.part = ANY (p_parts) AND p.status = 'succeeded';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM pgjobs._export_parts_done(p_id);
    RETURN v_count;
END
$$;

COMMENT ON FUNCTION pgjobs.export_parts_redo(bigint, text, integer[], text) IS
'Queues again, from scratch, succeeded parts of a parallel export whose objects are no longer '
'what they recorded (the job''s worker, fenced on its lease); returns how many.';
