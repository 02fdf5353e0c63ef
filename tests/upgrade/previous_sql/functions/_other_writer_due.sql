CREATE OR REPLACE FUNCTION pgjobs._other_writer_due(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Is a delete or backfill job other than p_id queued, due (run_at has come)
-- and free to start through its scope's gate (pgjobs._writer_may_start),
-- i.e. something pgjobs.run's next claim could take? pgjobs._throttle asks
-- it before handing back a rate-limited job. Locks nothing.
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM pgjobs.jobs o
         WHERE o.status = 'queued' AND o.kind = ANY (pgjobs._engine_kinds())
           AND o.run_at <= now() AND o.id <> p_id
           AND pgjobs._writer_may_start(o.target, o.scope, coalesce(o.gate_order, o.id)));
END
$$;
