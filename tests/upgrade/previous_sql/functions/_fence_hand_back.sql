CREATE OR REPLACE FUNCTION pgjobs._fence_hand_back(p_id bigint, p_worker text, p_holders text,
                                                   p_warn boolean)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Job p_id (held by p_worker, the claim's identity) cannot run a page: a
-- transaction holds the DDL fence past its commit (p_holders,
-- pgjobs._ddl_fence_holders' words: a DDL transaction that ran SET
-- CONSTRAINTS ALL IMMEDIATE and stays open, or a prepared one), and every
-- delete and backfill page returns 'blocked' until it ends. The job used to
-- stay `running`, its runner retrying every 50 ms, with nothing in its row,
-- its events or `pgjobs status` to say why (pgjobs.run_job retried for
-- ever). It is handed back as a job behind its table's lock is
-- (pgjobs._table_hand_back, the same note and back-off): released (the
-- attempt not counted, cursor and place in the scope's gate kept), due
-- again after 2, 4, 8, then every 15 s while the fence stays held, and
-- shown as waiting: checkpoint.throttled = {"reason", "since", "waits_for":
-- "ddl_fence", "handbacks", "until"}. The reason is the same for everyone:
-- clients read their jobs' rows, and the holder may be another role's
-- session whose pid and query they may not see; an administrator finds it
-- with pgjobs.doctor() (engine.ddl_fence_held). The runner's WARNING (a
-- spell's first hand-back, every one when p_warn: pgjobs.run_job) names
-- p_holders: runners are the engine's. A spell's first hand-back sends the
-- `throttled` event. At the next claim the fence is looked at before the
-- page (pgjobs._run_step); the first page after the holder ends writes the
-- checkpoint without the note (pgjobs._throttle, pgjobs._run_page).
-- Returns false, changing nothing, when p_worker no longer holds the job.
-- Locks: the job's row (the caller's lock_timeout applies).
DECLARE
    v_job pgjobs.jobs;
    v_before jsonb;
    v_handbacks integer;
    v_until timestamptz;
BEGIN
    SELECT j.checkpoint -> 'throttled' INTO v_before FROM pgjobs.jobs j WHERE j.id = p_id;
    IF v_before ->> 'waits_for' IS DISTINCT FROM 'ddl_fence' THEN
        v_before := NULL;  -- not a wait for the fence: a new spell
    END IF;
    IF NOT pgjobs.release(p_id, p_worker) THEN
        RETURN false;
    END IF;
    v_handbacks := coalesce((v_before ->> 'handbacks')::integer, 0) + 1;
    v_until := now() + make_interval(secs => least(15, 2 ^ least(v_handbacks, 4)));
    UPDATE pgjobs.jobs j
       SET run_at = v_until,
           checkpoint = coalesce(j.checkpoint, '{}'::jsonb) || jsonb_build_object('throttled',
               jsonb_build_object(
                   'reason', 'waiting for the DDL fence: a transaction holds it past its '
                             'commit (doctor: engine.ddl_fence_held); it goes on by itself '
                             'once that transaction ends, nothing lost; if it does not end, '
                             'ask an administrator (pgjobs.doctor() names it and how to end '
                             'it)',
                   'since', coalesce(v_before -> 'since', to_jsonb(now())),
                   'waits_for', 'ddl_fence',
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
    IF p_warn OR v_before IS NULL THEN
        RAISE WARNING 'pgjobs: job % left for now: the DDL fence is held by %', p_id, p_holders
            USING HINT = format('Every delete and backfill page is blocked until that '
                                'transaction ends (a DDL transaction that ran SET CONSTRAINTS '
                                'ALL IMMEDIATE and stays open, or a prepared one). The job is '
                                'handed back (no attempt counted, its place in its scope kept) '
                                'and tried again from %s; end that transaction as the words '
                                'say (SELECT * FROM pgjobs.doctor() WHERE check_name = '
                                '''engine.ddl_fence_held'').', v_until);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs._fence_hand_back(bigint, text, text, boolean) IS
'Hands a running delete or backfill back to the queue while a transaction holds the DDL fence '
'past its commit: checkpoint.throttled says so in words any reader of the job may see (the '
'holder is named to the runner and in pgjobs.doctor(), not in the row); due again after a '
'short back-off.';
