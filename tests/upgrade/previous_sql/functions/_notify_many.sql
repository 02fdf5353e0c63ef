CREATE OR REPLACE FUNCTION pgjobs._notify_many(p_jobs pgjobs.jobs[], p_event text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Sends event p_event about each job of p_jobs, in order: on the shared
-- channel `pgjobs` (every role that can connect may LISTEN) only {"id",
-- "kind", "event", "status", "done", "total"} (and "skipped" for a backfill
-- that left rows unchanged), plus target and scope when an
-- administrator allowed it (pgjobs.set_defaults notify_target_scope); on the
-- job's own channel (pgjobs._channel_name of its target and scope, obtained
-- through pgjobs.channel by callers allowed to read them) the full event
-- with target and scope. Payloads stay well under 1 KB: the scope is cut to
-- 200 characters. The one place events are built: pgjobs._notify sends one
-- through it. The contract's events are per job, so n jobs make n events on
-- each channel; a batch reads the queue usage and the defaults once and
-- names every job's channel with one call (pgjobs._channel_names: one read
-- of the secret, not a call and a lookup per job).
--
-- A listener that is slow or stuck inside a transaction keeps the shared
-- notification queue from draining; once the queue is full, NOTIFY makes
-- the COMMIT fail. A job must never fail for that, so progress events are
-- dropped when the queue is half full and every event when it is 90% full:
-- listeners keep polling pgjobs.jobs as their fallback. The usage comes
-- from pgjobs._notification_queue_usage (tests replace it). Locks nothing.
DECLARE
    v_usage double precision;
    v_shared_full boolean;
    v_job pgjobs.jobs;
    v_full jsonb;
    v_targets regclass[] := '{}'::regclass[];
    v_scopes text[] := '{}'::text[];
    v_channels text[];
    v_i integer := 0;
BEGIN
    IF p_jobs IS NULL OR cardinality(p_jobs) = 0 THEN
        RETURN;
    END IF;
    v_usage := pgjobs._notification_queue_usage();
    IF v_usage > 0.9 OR (p_event = 'progress' AND v_usage > 0.5) THEN
        RETURN;
    END IF;
    v_shared_full := coalesce((pgjobs._defaults() ->> 'notify_target_scope')::boolean, false);
    FOREACH v_job IN ARRAY p_jobs LOOP
        v_targets := v_targets || v_job.target;
        v_scopes := v_scopes || v_job.scope;
    END LOOP;
    v_channels := pgjobs._channel_names(v_targets, v_scopes);
    FOREACH v_job IN ARRAY p_jobs LOOP
        v_i := v_i + 1;
        v_full := jsonb_build_object(
            'id', v_job.id,
            'kind', v_job.kind,
            'event', p_event,
            'status', v_job.status,
            'done', v_job.done,
            'total', v_job.total,
            'target', v_job.target::text,
            'scope', left(v_job.scope, 200))
            -- A backfill's rows left unchanged so far (pgjobs._run_page):
            -- in its progress events and its last one, so a listener learns
            -- of them without reading the job.
            || CASE WHEN jsonb_typeof(v_job.checkpoint -> 'skipped' -> 'rows') = 'number'
                    THEN jsonb_build_object('skipped', v_job.checkpoint -> 'skipped' -> 'rows')
                    ELSE '{}'::jsonb END;
        PERFORM pg_notify('pgjobs', (CASE WHEN v_shared_full THEN v_full
                                          ELSE v_full - 'target' - 'scope' END)::text);
        IF v_channels[v_i] IS NOT NULL THEN
            PERFORM pg_notify(v_channels[v_i], v_full::text);
        END IF;
    END LOOP;
END
$$;
