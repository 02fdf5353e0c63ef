CREATE OR REPLACE FUNCTION pgjobs._doctor_jobs(p_target regclass, p_prune_sql text)
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's checks of running and held jobs (only p_target's when
-- given): expired leases, overdue heartbeats under a lease still valid
-- (no heartbeat for over half the lease, and at least a minute: with the
-- default 30 s lease the lease expires first and jobs.leases reports it;
-- with a long one a dead worker would hold its job, and a writer its
-- scope's gate, until it expires), paused writers that keep later writers of their scope waiting,
-- jobs held by throttling (and why). p_prune_sql: the prune command this
-- database runs (the fix of a lapsed lease). Read-only.
DECLARE
    v_ids    bigint[];
    v_oldest interval;
    v_left   interval;
    v_error  text;
BEGIN
    target := CASE WHEN p_target IS NOT NULL THEN p_target::text END;

    check_name := 'jobs.leases';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id), max(now() - j.lease_expires_at)
      INTO v_ids, v_oldest
      FROM pgjobs.jobs j
     WHERE j.status = 'running' AND j.lease_expires_at < now()
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no running job has an expired lease';
    ELSE
        status := 'warn';
        detail := format('%s running job(s) whose worker stopped heartbeating, lease expired '
                         'up to %s ago (ids %s); a writing one holds its scope''s gate until '
                         'prune or a claim takes it back', cardinality(v_ids),
                         date_trunc('second', v_oldest), array_to_string(v_ids[1:20], ', '));
        fix := p_prune_sql;
    END IF;
    RETURN NEXT;

    check_name := 'jobs.heartbeats';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id),
           max(now() - coalesce(j.heartbeat_at, j.started_at, j.updated_at)),
           max(j.lease_expires_at - now())
      INTO v_ids, v_oldest, v_left
      FROM pgjobs.jobs j
     WHERE j.status = 'running' AND j.lease_expires_at >= now()
       AND coalesce(j.heartbeat_at, j.started_at, j.updated_at)
           < now() - greatest(j.lease / 2, interval '1 minute')
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no running job has gone over half its lease (and a minute) without a '
                  'heartbeat';
    ELSE
        status := 'warn';
        detail := format('%s running job(s) without a heartbeat for up to %s, over half their '
                         'lease, which still holds them for up to %s (ids %s): their worker '
                         'may hang or have died', cardinality(v_ids),
                         date_trunc('second', v_oldest), date_trunc('second', v_left),
                         array_to_string(v_ids[1:20], ', '));
        -- Lapse the lease now, then rescue as for any expired lease: the
        -- worker is fenced off (its lease is gone) and the job is retried.
        fix := format('UPDATE pgjobs.jobs SET lease_expires_at = now() - interval ''1 second'' '
                      'WHERE id = ANY (%L::bigint[]) AND status = ''running''; %s  -- takes '
                      'them back now; their worker is fenced off', v_ids, p_prune_sql);
    END IF;
    RETURN NEXT;

    -- A paused writer keeps its place in its scope's queue: later writers of
    -- the scope wait until it is resumed or canceled. Whether it holds one is
    -- the gate's own rule, pgjobs._gate_clause() (its w is the paused job, its
    -- p_target, p_scope, p_place the writer queued behind): a copy of the rule
    -- here warned of a paused writer that never started and was not due (or
    -- an import unclaimed for 10 minutes), which holds nothing. Dynamic SQL
    -- because the rule is SQL text; doctor is not on any hot path. Of those a
    -- client paused, it says when the engine cancels each
    -- (pgjobs._expire_client_pauses, after max_client_pause).
    check_name := 'jobs.paused';
    fix := NULL;
    EXECUTE format($paused$
        SELECT array_agg(w.id ORDER BY w.id), max(now() - w.updated_at),
               string_agg(format('job %%s in %%s', w.id,
                                 date_trunc('second', greatest(w.paused_at + $2 - now(),
                                                               interval '0'))),
                          ', ' ORDER BY w.paused_at, w.id) FILTER (WHERE NOT w.paused_by_admin)
          FROM pgjobs.jobs w
         WHERE w.status = 'paused' AND w.writes
           AND ($1 IS NULL OR w.target = $1)
           AND EXISTS (
               SELECT FROM pgjobs.jobs q
                CROSS JOIN LATERAL (SELECT q.target AS p_target, q.scope AS p_scope,
                                           coalesce(q.gate_order, q.id) AS p_place) gate
                WHERE q.target = w.target AND q.scope = w.scope
                  AND q.status = 'queued' AND q.writes
                  AND %s)$paused$, pgjobs._gate_clause())
      INTO v_ids, v_oldest, v_error
      USING p_target, pgjobs._max_client_pause();
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no paused writing job keeps later writers of its scope waiting';
    ELSE
        status := 'warn';
        detail := format('%s paused writing job(s), paused up to %s ago, keep later writers of '
                         'their scope waiting (ids %s)', cardinality(v_ids),
                         date_trunc('second', v_oldest), array_to_string(v_ids[1:20], ', '))
                  || CASE WHEN v_error IS NOT NULL
                          THEN format('; paused by a client, so the engine cancels them once '
                                      'paused for max_client_pause (%s): %s',
                                      pgjobs._max_client_pause(), left(v_error, 1000))
                          ELSE '' END;
        fix := format('SELECT pgjobs.resume(id) FROM pgjobs.jobs WHERE id = ANY (%L::bigint[]);  '
                      '-- or pgjobs.cancel(id) to let the scope move on', v_ids);
    END IF;
    RETURN NEXT;

    -- Throttling (pgjobs._throttle) -------------------------------------------
    check_name := 'jobs.throttled';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id),
           string_agg(format('job %s since %s: %s', j.id,
                             date_trunc('second', (j.checkpoint #>> '{throttled,since}')::timestamptz),
                             j.checkpoint #>> '{throttled,reason}'), '; ' ORDER BY j.id)
      INTO v_ids, v_error
      FROM pgjobs.jobs j
     WHERE j.status IN ('queued', 'running') AND j.checkpoint ? 'throttled'
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no job is held by a throttling signal';
    ELSE
        status := 'warn';
        detail := format('%s job(s) held until the signal clears: %s', cardinality(v_ids),
                         left(v_error, 2000));
        fix := format('Fix the cause (a lagging standby: SELECT * FROM pg_stat_replication; '
                      'an inactive consumer of a slot: pg_replication_slots), or raise the '
                      'limit of these jobs (0 turns a limit off): UPDATE pgjobs.jobs SET options '
                      '= options || ''{"max_replica_lag_bytes": 1073741824}'' WHERE id = ANY '
                      '(%L::bigint[]);', v_ids);
    END IF;
    RETURN NEXT;
END
$function$;
