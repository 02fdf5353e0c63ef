CREATE OR REPLACE FUNCTION pgjobs._rescue_expired()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Takes back the jobs whose lease expired (pgjobs._rescue_sweep: queued
-- again, failed, canceled or paused), for every caller: claim,
-- claim_export, claim_import, run_job's claim (pgjobs._claim_id) and prune.
-- Most calls find no expired lease, so a probe comes first: one look at the
-- low end of jobs_leases_idx (about 50 us, no write, no row lock); the
-- sweep (an UPDATE, events) runs only when the probe finds one, so rescue
-- stays immediate while the common claim writes nothing here.
-- Locks: what pgjobs._rescue_sweep locks, only when it runs.
-- Returns {"retried", "failed", "canceled", "paused"}.
BEGIN
    IF EXISTS (SELECT FROM pgjobs.jobs e
                WHERE e.status = 'running' AND e.lease_expires_at < now()) THEN
        RETURN pgjobs._rescue_sweep();
    END IF;
    RETURN '{"retried": 0, "failed": 0, "canceled": 0, "paused": 0}'::jsonb;
END
$$;
