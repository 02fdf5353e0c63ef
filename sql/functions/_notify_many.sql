CREATE OR REPLACE FUNCTION pgjobs._notify_many(p_jobs pgjobs.jobs[], p_event text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Sends event p_event about each job of p_jobs, exactly as pgjobs._notify
-- would one by one (the same payloads on the shared channel and on each
-- job's own channel, the same drop rule when the notification queue fills),
-- in one statement: the queue usage and the defaults are read once, and
-- each (target, scope)'s channel name is computed once. The contract's
-- events are per job, so a batch of n jobs still sends n events on each
-- channel. Locks nothing.
DECLARE
    v_usage double precision := pgjobs._notification_queue_usage();
    v_shared_full boolean;
BEGIN
    IF p_jobs IS NULL OR cardinality(p_jobs) = 0
       OR v_usage > 0.9 OR (p_event = 'progress' AND v_usage > 0.5) THEN
        RETURN;
    END IF;
    v_shared_full := coalesce((pgjobs._defaults() ->> 'notify_target_scope')::boolean, false);
    PERFORM pg_catalog.pg_notify(n.channel, n.payload)
       FROM (SELECT j.ordinality AS ord, j.id,
                    jsonb_build_object('id', j.id, 'kind', j.kind, 'event', p_event,
                                       'status', j.status, 'done', j.done, 'total', j.total,
                                       'target', j.target::text,
                                       'scope', left(j.scope, 200)) AS full_event,
                    c.channel AS own_channel
               FROM unnest(p_jobs) WITH ORDINALITY AS j
               JOIN (SELECT DISTINCT u.target, u.scope,
                            pgjobs._channel_name(u.target, u.scope) AS channel
                       FROM unnest(p_jobs) u) c
                 ON c.target = j.target AND c.scope = j.scope) e
      CROSS JOIN LATERAL (VALUES
            (1, 'pgjobs', (CASE WHEN v_shared_full THEN e.full_event
                                ELSE e.full_event - 'target' - 'scope' END)::text),
            (2, e.own_channel, e.full_event::text)) AS n(nth, channel, payload)
      WHERE n.channel IS NOT NULL
      ORDER BY e.ord, n.nth;
END
$$;
