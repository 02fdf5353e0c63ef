CREATE OR REPLACE FUNCTION pgjobs._table_hand_back(p_id bigint, p_worker text, p_holders text,
                                                   p_waited text, p_warn boolean)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Job p_id (held by p_worker, the claim's identity) cannot have its table:
-- another session holds it in a mode a page cannot work under (p_holders,
-- pgjobs._lock_holders' words: an ALTER TABLE, LOCK TABLE, CREATE INDEX or
-- VACUUM FULL not yet committed), after a wait of p_waited (text, '1 s',
-- '200 ms'; NULL: not waited, the holder seen in pg_locks before the
-- page). A migration may hold a table for minutes or hours, and the job
-- used to keep its lease until it lapsed, counting a failed attempt each
-- time, until it failed 'lease expired'. Instead it is handed back now (pgjobs.release: lease released,
-- the attempt not counted, cursor kept; a pending cancel or pause takes
-- effect), due again after a short back-off (2, 4, 8, then every 15 s while
-- the holder stays), so runners do not re-claim it in a loop and the jobs
-- of other tables go on. Its place in its scope's gate is kept: it started,
-- so pgjobs._writer_may_start keeps later writers of the scope behind it.
-- It shows as waiting: checkpoint.throttled = {"reason" (the table, the
-- holding sessions, what to do), "since" (the spell's start), "holders",
-- "handbacks", "until"}, what `pgjobs status`, stats and doctor show for
-- throttling; a spell's first hand-back sends the `throttled` event and a
-- WARNING, as does one whose holders changed, and every one when p_warn
-- (pgjobs.run_job: its caller learns why it returned). The first page
-- after the holder ends writes the checkpoint afresh (pgjobs._run_page).
-- Returns false, changing nothing, when p_worker no longer holds the job.
-- Locks: the job's row (the caller's lock_timeout applies).
DECLARE
    v_job pgjobs.jobs;
    v_before jsonb;
    v_handbacks integer;
    v_until timestamptz;
    v_pid text;
    v_reason text;
BEGIN
    SELECT j.checkpoint -> 'throttled' INTO v_before FROM pgjobs.jobs j WHERE j.id = p_id;
    IF NOT coalesce(v_before ? 'holders', false) THEN
        v_before := NULL;  -- not a lock wait's: a new spell
    END IF;
    IF NOT pgjobs.release(p_id, p_worker) THEN
        RETURN false;
    END IF;
    v_handbacks := coalesce((v_before ->> 'handbacks')::integer, 0) + 1;
    v_until := now() + make_interval(secs => least(15, 2 ^ least(v_handbacks, 4)));
    v_pid := substring(p_holders FROM '^pid ([0-9]+)');
    UPDATE pgjobs.jobs j
       SET run_at = v_until,
           checkpoint = coalesce(j.checkpoint, '{}'::jsonb) || jsonb_build_object('throttled',
               jsonb_build_object(
                   'reason', format('waits for its table %s, which %s holds (an ALTER TABLE, '
                                    'LOCK TABLE, CREATE INDEX or VACUUM FULL not yet '
                                    'committed?); it goes on by itself once that transaction '
                                    'ends, nothing lost; to end it: SELECT '
                                    'pg_terminate_backend(%s)', j.target, p_holders,
                                    coalesce(v_pid, 'pid')),
                   'since', coalesce(v_before -> 'since', to_jsonb(now())),
                   'holders', p_holders,
                   'handbacks', v_handbacks,
                   'until', v_until)),
           updated_at = now()
     WHERE j.id = p_id AND j.status = 'queued'
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        RETURN true;  -- canceled or paused by the release: its own event was sent
    END IF;
    IF v_before IS NULL THEN
        PERFORM pgjobs._notify(v_job, 'throttled');
    END IF;
    IF p_warn OR v_before IS NULL OR v_before ->> 'holders' IS DISTINCT FROM p_holders THEN
        v_reason := CASE WHEN p_waited IS NULL
                         THEN format('its table %s is held by %s', v_job.target,
                                     p_holders)
                         ELSE format('waited %s for its table %s, which %s holds', p_waited,
                                     v_job.target, p_holders) END;
        RAISE WARNING 'pgjobs: job % left for now: %', p_id, v_reason
            USING HINT = format('The job is handed back (no attempt counted, its place in its '
                                'scope kept) and tried again from %s; it goes on by itself once '
                                'that transaction commits or rolls back. If it does not end, '
                                'end it: SELECT pg_terminate_backend(%s).', v_until,
                                coalesce(v_pid, 'pid'));
    END IF;
    RETURN true;
END
$$;
