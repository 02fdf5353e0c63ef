CREATE OR REPLACE FUNCTION pgjobs._writer_may_start(p_target regclass, p_scope text,
                                                    p_place bigint)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The gate: may the writing job of (p_target, p_scope) whose place in the
-- scope's queue is p_place (its coalesce(gate_order, id)) start now? Only
-- when no other writing job of the scope is running, or queued or paused
-- ahead of it, so writes to a scope apply one at a time, in submission
-- order (a retried job's place is its retry: pgjobs.retry sets gate_order).
-- A queued writer that is not due yet (run_at in the future) and never started
-- holds nothing: anyone who may submit an import could otherwise hold a
-- scope's gate until its run_at (say 2100). One that started and waits for
-- a retry's backoff still holds it, so its successors keep their order.
-- Used by pgjobs.claim and pgjobs._claim_id, and by pgjobs._insert_job's
-- on_conflict: reject (with the place after every other). STABLE: it reads with the caller's
-- snapshot, like the subquery it replaces. A function rather than an
-- inline subquery because claim was planned afresh on every call (its LIMIT
-- is a parameter; its plan is generic now, see pgjobs.claim, but
-- pgjobs._claim_id and _insert_job ask too), and planning the correlated
-- subquery against the jobs table's partial indexes cost about 0.2 ms a
-- claim; this query is planned once per session. pgjobs._gate_holder
-- names the job that holds the gate by the same rule (for status and
-- watch): change both together. Locks nothing.
BEGIN
    RETURN NOT EXISTS (
        SELECT 1 FROM pgjobs.jobs w
         WHERE w.target = p_target AND w.scope = p_scope
           AND w.writes
           AND w.status IN ('queued', 'running', 'paused')
           -- Places are unique (gate_order comes from the id sequence), so this
           -- leaves out the job itself. The caller passes the place rather than
           -- the id: looking it up here cost 60% more per call (bench/writer_gate.py).
           AND coalesce(w.gate_order, w.id) <> p_place
           AND (w.status = 'running' OR coalesce(w.gate_order, w.id) < p_place)
           -- Who holds the gate: a running writer; a queued one that already
           -- started (waiting for a retry, or handed back); a due, queued
           -- delete or backfill, which the engine itself will run; and any
           -- other due writer (an import) for its first 10 minutes due: it
           -- may be being claimed right now (an uncommitted claim still
           -- reads as queued), but a job that no worker claims in that time
           -- stops holding the scope, so no role that may only INSERT can
           -- stall a scope's deletes with a job nobody runs.
           AND (w.status = 'running' OR w.started_at IS NOT NULL
                OR (w.run_at <= now()
                    AND (w.kind IN ('delete', 'backfill')
                         OR w.run_at > now() - interval '10 minutes'))));
END
$$;
