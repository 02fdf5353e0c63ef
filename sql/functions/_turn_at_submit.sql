CREATE OR REPLACE FUNCTION pgjobs._turn_at_submit(p_kind text, p_target regclass, p_scope text,
                                               p_run_at timestamptz)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The queued_at a job joins the queue with at its submit
-- (pgjobs._insert_job_row): its turn between tenants (pgjobs._tenant_turn),
-- except a delete or backfill due now that is submitted while a delete or
-- backfill of its scope is queued, due and has not started: the gate holds
-- the new one behind it, so it is parked an hour ahead, after every job
-- queued meanwhile, and comes back to now() when the writer before it
-- starts, fails at its start or is canceled (pgjobs._pass_writer_turn).
-- A tenant's stream of small writers sat, all but one held by the gate,
-- ahead in the claims' order, and every claim asked the gate about each of
-- them (1.22-1.31x the time a job for a stream of 200, bench/stream.py).
-- The park is a turn, not a wait: queued_at only orders jobs that are due,
-- so a parked job whose gate is free still goes when no job queued before
-- its park is due, and an hour on it is ahead of every job queued since.
-- Only at submit: a retry or resume keeps its tenant turn (a resumed
-- writer may be first in its scope, with no one before it to pass it the
-- turn). Reads the scope's pending writers (jobs_pending_writers_idx).
-- Locks nothing.
SELECT CASE WHEN p_kind = ANY (pgjobs._engine_kinds()) AND p_run_at <= now()
                 AND EXISTS (SELECT FROM pgjobs.jobs w
                              WHERE w.target = p_target AND w.scope = p_scope
                                AND w.writes AND w.status = 'queued'
                                AND w.kind = ANY (pgjobs._engine_kinds())
                                AND w.started_at IS NULL AND w.run_at <= now())
            THEN now() + interval '1 hour'
            ELSE pgjobs._tenant_turn(p_kind, p_target, p_scope, p_run_at) END
$$;
COMMENT ON FUNCTION pgjobs._turn_at_submit(text, regclass, text, timestamptz) IS
'The queued_at a submitted job joins the queue with: its tenant turn (pgjobs._tenant_turn), or, for a delete or backfill submitted behind a queued writer of its scope that has not started, an hour ahead until that one starts (pgjobs._pass_writer_turn).';
