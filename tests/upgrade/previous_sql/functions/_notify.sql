CREATE OR REPLACE FUNCTION pgjobs._notify(p_job pgjobs.jobs, p_event text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Sends one event about p_job on channel `pgjobs`. The payload is a small
-- JSON object (well under 1 KB: the scope is cut to 200 characters).
--
-- A listener that is slow or stuck inside a transaction keeps the shared
-- notification queue from draining; once the queue is full, NOTIFY makes
-- the COMMIT fail. A job must never fail for that, so progress events are
-- dropped when the queue is half full and every event when it is 90% full:
-- listeners keep polling pgjobs.jobs as their fallback. The usage comes
-- from pgjobs._notification_queue_usage (tests replace it). Locks nothing.
DECLARE
    v_usage double precision := pgjobs._notification_queue_usage();
BEGIN
    IF v_usage > 0.9 OR (p_event = 'progress' AND v_usage > 0.5) THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_notify('pgjobs', pg_catalog.json_build_object(
        'id', p_job.id,
        'kind', p_job.kind,
        'event', p_event,
        'status', p_job.status,
        'done', p_job.done,
        'total', p_job.total,
        'target', p_job.target::text,
        'scope', pg_catalog.left(p_job.scope, 200))::text);
END
$$;
