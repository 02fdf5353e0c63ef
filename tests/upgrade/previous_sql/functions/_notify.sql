CREATE OR REPLACE FUNCTION pgjobs._notify(p_job pgjobs.jobs, p_event text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Sends one event about p_job: on the shared channel `pgjobs` (every role
-- that can connect may LISTEN) only {"id", "kind", "event", "status",
-- "done", "total"}, plus target and scope when an administrator allowed it
-- (pgjobs.set_defaults notify_target_scope); on the job's own channel
-- (pgjobs._channel_name of its target and scope, obtained through
-- pgjobs.channel by callers allowed to read them) the full event with
-- target and scope. Payloads stay well under 1 KB: the scope is cut to 200
-- characters.
--
-- A listener that is slow or stuck inside a transaction keeps the shared
-- notification queue from draining; once the queue is full, NOTIFY makes
-- the COMMIT fail. A job must never fail for that, so progress events are
-- dropped when the queue is half full and every event when it is 90% full:
-- listeners keep polling pgjobs.jobs as their fallback. The usage comes
-- from pgjobs._notification_queue_usage (tests replace it). Locks nothing.
DECLARE
    v_usage double precision := pgjobs._notification_queue_usage();
    v_full jsonb;
    v_channel text;
BEGIN
    IF v_usage > 0.9 OR (p_event = 'progress' AND v_usage > 0.5) THEN
        RETURN;
    END IF;
    v_full := pg_catalog.jsonb_build_object(
        'id', p_job.id,
        'kind', p_job.kind,
        'event', p_event,
        'status', p_job.status,
        'done', p_job.done,
        'total', p_job.total,
        'target', p_job.target::text,
        'scope', pg_catalog.left(p_job.scope, 200));
    PERFORM pg_catalog.pg_notify('pgjobs', (CASE
        WHEN (pgjobs._defaults() ->> 'notify_target_scope')::boolean THEN v_full
        ELSE v_full - 'target' - 'scope' END)::text);
    v_channel := pgjobs._channel_name(p_job.target, p_job.scope);
    IF v_channel IS NOT NULL THEN
        PERFORM pg_catalog.pg_notify(v_channel, v_full::text);
    END IF;
END
$$;
