CREATE OR REPLACE FUNCTION pgjobs._gate_clause()
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $body$
-- The gate, its one definition: the condition under which job w (a row of
-- pgjobs.jobs) holds the gate in front of the writing job of (p_target,
-- p_scope) whose place in the scope's queue is p_place (its
-- coalesce(gate_order, id)). Writes to a scope apply one at a time, in
-- submission order: a writer may start only when no other writer of its
-- scope holds the gate (a retried job's place is its retry: pgjobs.retry
-- sets gate_order).
-- Not called on the claim's path: sql/functions/_gate_holder.sql and
-- _writer_may_start.sql compile this text into those two functions on every
-- migrate (this file sorts before both), so the gate (claim's question,
-- NOT EXISTS) and the job it names (`pgjobs status`, ORDER BY ... LIMIT 1)
-- cannot drift apart, at no cost on the claim's path: calling one from the
-- other cost 1.2 to 1.7 times as much per gate call (bench/writer_gate.py).
-- Doctor's jobs.paused check (pgjobs._doctor_jobs) runs the same text in
-- dynamic SQL, with the paused job as w. Which kinds the engine runs itself
-- is pgjobs._engine_kinds(), folded to a constant when the query is planned.
-- Locks nothing.
SELECT $rule$w.target = p_target AND w.scope = p_scope
           AND w.writes
           AND w.status IN ('queued', 'running', 'paused')
           -- Places are unique (gate_order comes from the id sequence), so this
           -- leaves out the job itself. The caller passes the place rather than
           -- the id: looking it up here cost 60% more per call (bench/writer_gate.py).
           AND coalesce(w.gate_order, w.id) <> p_place
           AND (w.status = 'running' OR coalesce(w.gate_order, w.id) < p_place)
           -- Who holds the gate: a running writer; a queued or paused one that
           -- already started (waiting for a retry, or handed back: its
           -- successors keep their order); a due delete or backfill, which
           -- the engine itself will run; and any other due writer (an import)
           -- for its first 10 minutes due: it may be being claimed right now
           -- (an uncommitted claim still reads as queued), but a job that no
           -- worker claims in that time stops holding the scope, so no role
           -- that may only INSERT can stall a scope's deletes with a job nobody
           -- runs. A writer that is not due yet (run_at in the future) and
           -- never started holds nothing: anyone who may submit an import
           -- could otherwise hold a scope's gate until its run_at (say 2100).
           AND (w.status = 'running' OR w.started_at IS NOT NULL
                OR (w.run_at <= now()
                    AND (w.kind = ANY (pgjobs._engine_kinds())
                         OR w.run_at > now() - interval '10 minutes')))$rule$
$body$;
COMMENT ON FUNCTION pgjobs._gate_clause() IS
'The writers'' gate''s rule, written once: the condition under which job w holds the gate in front of the writer of (p_target, p_scope) at place p_place. Compiled by pgjobs migrate into pgjobs._writer_may_start and pgjobs._gate_holder; run by pgjobs.doctor''s jobs.paused check (dynamic SQL), on no hot path.';
