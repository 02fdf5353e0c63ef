CREATE OR REPLACE FUNCTION pgjobs._expire_client_pauses()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Cancels the writing jobs that a role that is not an administrator paused
-- (paused_by_admin false) longer than pgjobs._max_client_pause() ago
-- (paused_at). A paused writer that started keeps its place in its scope's
-- queue and holds the scope's gate (pgjobs._gate_clause): every later
-- writer waits behind it, as API.md says, and without this a client (one
-- that may only INSERT, say) could pause its started import and stall the
-- scope's deletes for good, since a paused job is never pruned and the
-- roles it stalls may not cancel it. Canceled as pgjobs.cancel would
-- (event `canceled`), with an error that says why; pgjobs.retry queues it
-- again, behind the scope's later writers. Jobs an administrator paused
-- are left alone; so are paused jobs that do not write (they hold nobody).
-- Called by pgjobs.prune and at the start of every pgjobs.run (the
-- engine's maintenance path, about once a minute under pg_cron), never by
-- a claim: a probe on jobs_client_paused_idx comes first, so a call that
-- finds nothing writes nothing. Returns how many it canceled.
-- Locks: the rows it cancels, SKIP LOCKED (a pause, resume or cancel in
-- flight on one is left for the next call); never waits.
DECLARE
    v_max interval := pgjobs._max_client_pause();
    v_job pgjobs.jobs;
    v_count integer := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pgjobs.jobs p
                    WHERE p.status = 'paused' AND p.writes AND NOT p.paused_by_admin
                      AND p.paused_at < now() - v_max) THEN
        RETURN 0;
    END IF;
    FOR v_job IN
        WITH expired AS (
            SELECT p.id FROM pgjobs.jobs p
             WHERE p.status = 'paused' AND p.writes AND NOT p.paused_by_admin
               AND p.paused_at < now() - v_max
             ORDER BY p.paused_at
             LIMIT 1000
               FOR UPDATE SKIP LOCKED)
        UPDATE pgjobs.jobs j
           SET status = 'canceled', cancel_requested_at = now(), finished_at = now(),
               updated_at = now(),
               error = format('canceled by the engine: paused by a client (%s) since %s, longer '
                              'than max_client_pause (%s), while later writers of scope %s of %s '
                              'waited behind it; pgjobs.retry(%s) queues it again, behind '
                              'them, or ask an administrator to raise max_client_pause '
                              '(pgjobs.set_defaults) or to pause it themselves',
                              -- The submitter as it is called now (renamed
                              -- since, the role an administrator finds).
                              pgjobs._submitter_name(j.submitted_by, j.submitted_by_oid),
                              date_trunc('second', j.paused_at), v_max,
                              j.scope, j.target, j.id)
          FROM expired
         WHERE j.id = expired.id
        RETURNING j.*
    LOOP
        IF v_job.fanout THEN
            -- Its items end with it, as pgjobs.cancel ends them
            -- (pgjobs._items_stop, which asks a job not yet canceled).
            UPDATE pgjobs.job_items i
               SET status = 'canceled', lease_expires_at = NULL, finished_at = now(),
                   updated_at = now()
             WHERE i.job_id = v_job.id AND i.status IN ('queued', 'running');
            UPDATE pgjobs.jobs j SET result = pgjobs._items_result(v_job.id)
             WHERE j.id = v_job.id
            RETURNING j.* INTO v_job;
        END IF;
        -- Its scope's turn passes on, as at pgjobs.cancel: the writer next
        -- behind it may be parked (pgjobs._turn_at_submit).
        PERFORM pgjobs._pass_writer_turn(ARRAY[v_job]);
        PERFORM pgjobs._notify(v_job, 'canceled');
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

COMMENT ON FUNCTION pgjobs._expire_client_pauses() IS
'Cancels writing jobs a client (not an administrator) paused longer than max_client_pause ago '
'(set_defaults, default 1 hour), event canceled, with an error naming pgjobs.retry: a paused '
'writer holds its scope''s later writers. Run by pgjobs.prune and pgjobs.run. Returns how many.';
