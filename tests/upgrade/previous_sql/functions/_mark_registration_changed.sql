CREATE OR REPLACE FUNCTION pgjobs._mark_registration_changed(p_target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The registration of p_target is about to change its key, scope,
-- created_at or document column, or to be removed (pgjobs.register_target,
-- pgjobs.unregister_target, which refuse while a job of it is queued,
-- running or paused). Its failed and canceled jobs were compiled against
-- the old columns (the predicate names the scope column; cursor and
-- exclusions are keys of the key column): their checkpoint records
-- registration_changed, and pgjobs._require_requeue refuses to retry them.
-- Locks: those job rows.
BEGIN
    UPDATE pgjobs.jobs j
       SET checkpoint = coalesce(j.checkpoint, '{}'::jsonb)
                        || jsonb_build_object('registration_changed', now()),
           updated_at = now()
     WHERE j.target = p_target AND j.status IN ('failed', 'canceled')
       AND NOT coalesce(j.checkpoint ? 'registration_changed', false);
END
$$;
