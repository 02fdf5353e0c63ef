CREATE OR REPLACE FUNCTION pgjobs._pass_writer_turn(p_jobs pgjobs.jobs[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The turn between scopes passes on: p_jobs are writers that just left
-- their scope's queue (started, by pgjobs._start_attempts; failed at their
-- start, there too; canceled while queued or paused, by pgjobs._cancel_as
-- and pgjobs._expire_client_pauses),
-- and the writer next in each one's scope (by place, coalesce(gate_order,
-- id): the gate holds it until this one ends, or until nothing is ahead of
-- it) joins the queue now, behind the jobs of other scopes that waited
-- meanwhile. It kept its submit's queued_at, older than any job another
-- tenant submitted after the stream, and a tenant's small writers each end
-- inside a budget (none is handed back behind the others): a tenant that
-- queued twenty deletes had all twenty run before another tenant's one job
-- (tests/test_fairness_scopes.py). Only the next one: the others stay
-- parked (pgjobs._turn_at_submit: a delete or backfill submitted behind a
-- writer of its scope that has not started queues an hour ahead), so a
-- claim's pick meets the scope's one writer the gate holds, not the whole
-- stream (tests/test_writer_turn.py counts it). A delete's or backfill's
-- queued_at ahead of now is only such a park, and comes back to now; any
-- other writer's is never made earlier than it was: an import's turn
-- (pgjobs._tenant_turn) may be ahead. Reads the scope's pending writers
-- (jobs_pending_writers_idx); locks the rows it moves. PL/pgSQL, so the
-- UPDATE is planned once per session (a SQL function's is planned at every
-- call: a claim planned again each time, tests/test_claim_batch.py); on the
-- claim's path the plan is generic (plan_cache_mode, set by the caller).
--
-- SKIP LOCKED: the caller (a claim, a cancel) never waits for another
-- session on the next writer's row (a client's pause or cancel of it in a
-- transaction left open held the claim, and every other tenant's job it
-- had taken: tests/test_writer_turn.py, tests/test_fairness_scopes.py); a
-- next writer locked so keeps its place this once (behind, or parked: the
-- park orders, it never holds a job whose gate is free).
BEGIN
    UPDATE pgjobs.jobs n
       SET queued_at = now()
     WHERE n.id IN (SELECT x.id
                      FROM pgjobs.jobs x
                     WHERE x.id IN (SELECT (SELECT w.id
                                              FROM pgjobs.jobs w
                                             WHERE w.target = s.target AND w.scope = s.scope
                                               AND w.writes AND w.status = 'queued'
                                               AND coalesce(w.gate_order, w.id)
                                                   > coalesce(s.gate_order, s.id)
                                             ORDER BY coalesce(w.gate_order, w.id)
                                             LIMIT 1)
                                      FROM unnest(p_jobs) s
                                     WHERE s.writes)
                       AND (x.queued_at < now()
                            OR (x.queued_at > now()
                                AND x.kind = ANY (pgjobs._engine_kinds())))
                       FOR UPDATE SKIP LOCKED)
       AND (n.queued_at < now()
            OR (n.queued_at > now() AND n.kind = ANY (pgjobs._engine_kinds())));
END
$$;
COMMENT ON FUNCTION pgjobs._pass_writer_turn(pgjobs.jobs[]) IS
'The scope''s turn passes on: the next queued writer of each given writer''s scope (started, failed at its start or canceled before it) joins the queue at now(), from behind or from its park an hour ahead (pgjobs._turn_at_submit).';
