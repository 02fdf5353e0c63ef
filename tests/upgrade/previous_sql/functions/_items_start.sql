CREATE OR REPLACE FUNCTION pgjobs._items_start(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Starts queued fan-out job p_id at the claim of its first items
-- (pgjobs.claim_items): running, started_at, event started. No attempt
-- starts (that is pgjobs._start_attempts, for jobs that are themselves
-- work): nobody holds a fan-out job, its items are leased, so its worker
-- and lease are placeholders (a lease far in the future, finite because
-- clients read it; pgjobs._rescue_expired never takes it back).
-- Called before the items are taken (the lock order: the job row, then its
-- items), and skipped when another transaction holds the job row: a
-- claimer starting it too (it will be running), or a cancel or pause
-- (whose item updates wait for the items being taken and then apply to
-- them: their workers learn it at their next call). Claimers never wait
-- for each other. Locks: the job row (SKIP LOCKED).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    UPDATE pgjobs.jobs j
       SET status = 'running',
           worker = pgjobs._claim_identity('pgjobs.items'),
           lease_expires_at = '9999-12-31 00:00:00+00',
           heartbeat_at = now(),
           started_at = coalesce(j.started_at, now()),
           updated_at = now()
     WHERE j.id = (SELECT q.id FROM pgjobs.jobs q
                    WHERE q.id = p_id AND q.fanout AND q.status = 'queued'
                      FOR NO KEY UPDATE SKIP LOCKED)
    RETURNING j.* INTO v_job;
    IF FOUND THEN
        PERFORM pgjobs._notify(v_job, 'started');
    END IF;
END
$$;
