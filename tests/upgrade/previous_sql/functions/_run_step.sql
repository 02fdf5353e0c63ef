CREATE OR REPLACE FUNCTION pgjobs._run_step(p_id bigint, p_worker text,
                                            p_deadline timestamptz, p_previous text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- One step of the runner procedures (pgjobs.run, pgjobs.run_job), in the
-- caller's transaction, which COMMITs right after: a short pause when the
-- previous step was 'retry' (a lock wait; taken before the page locks
-- anything), one page (pgjobs._run_page, fenced on p_worker, the claim's
-- identity) unless pgjobs._throttle holds it (rate limit, health signals:
-- then 'more' and no page), and, when p_deadline (NULL: none) has passed with work left,
-- the job released to the queue with its cursor (pgjobs.release).
-- Returns 'more' or 'retry' while the caller should call again, NULL when
-- this job is over for this runner (done, failed, canceled, lost or
-- released). Locks: what pgjobs._run_page locks.
DECLARE
    v_state text;
BEGIN
    IF p_previous = 'retry' THEN
        PERFORM pg_sleep(0.05);
    END IF;
    v_state := coalesce(pgjobs._throttle(p_id, p_worker, p_deadline),  -- rate, health
                        pgjobs._run_page(p_id, p_worker));
    IF v_state NOT IN ('more', 'retry') THEN
        RETURN NULL;
    END IF;
    IF p_deadline IS NOT NULL AND clock_timestamp() >= p_deadline THEN
        PERFORM pgjobs.release(p_id, p_worker);
        RETURN NULL;
    END IF;
    RETURN v_state;
END
$$;
