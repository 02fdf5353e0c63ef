CREATE OR REPLACE FUNCTION pgjobs.export_parts_split(
    p_id bigint,
    p_worker text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Splits export job p_id, submitted with parallel: N > 1, into its parts
-- (pgjobs.export_parts) the first time the job is claimed, and returns how
-- many parts it has (0 for a job exported whole: parallel 1). The parts are
-- consecutive key ranges (after_key, until_key] of the scope, sized evenly
-- by the count of the scope's keys read from the (scope, key) index; a scope
-- with fewer keys than N gets fewer parts (at least one), and no job more
-- than the administrator's ceiling in force (pgjobs._max_parallel). Splitting again
-- returns the parts already made: a resumed job keeps its ranges and their
-- checkpoints (a part that failed for good, or whose lease expired on its
-- last attempt, is queued again, its attempts reset: the job was retried,
-- resumed or claimed again). Fenced on the claim: p_worker must hold the job's unexpired
-- lease, else 55000 (the caller stops). Reads the target with the caller's
-- rights after the submitter's run-time check, as export_chunk_sql does.
-- Locks: the job row, then the failed parts' rows: a failed part's row is
-- held (FOR SHARE) by its last attempt's cleanup while it removes what the
-- attempt wrote (Exporter._cleanup_hold), and the split waits for it as
-- long as the job's lease runs, whatever shorter lock_timeout the caller
-- set (a worker's 5 s): a longer removal no longer failed the split 55P03,
-- the job left to its lease's end and its next claim costing an attempt.
DECLARE
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_parts integer;
    v_scope text;
    v_rows bigint;
    v_step bigint;
    v_bounds text[];
    v_bound text;
    v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
    v_lease_left interval;
BEGIN
    SELECT j.* INTO v_job FROM pgjobs.jobs j
     WHERE j.id = p_id AND j.kind = 'export' AND j.worker = p_worker
       AND j.lease_expires_at > now()
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RAISE EXCEPTION 'job % is not an export running under %', p_id, p_worker
            USING ERRCODE = '55000',
            HINT = 'Claim the job first (pgjobs.claim or pgjobs.claim_export); a worker whose '
                   'lease was taken over stops.';
    END IF;
    -- A job claimed again after a part failed for good (pgjobs.retry): that
    -- part gets its attempts again and resumes from its checkpoint.
    -- Behind a failed part's cleanup (its hold): wait for it up to the
    -- lease's end, never less than the caller's own limit (0: no limit).
    v_lease_left := greatest(v_job.lease_expires_at - clock_timestamp(), interval '1 ms');
    IF v_lock_timeout::interval > interval '0' AND v_lock_timeout::interval < v_lease_left THEN
        PERFORM pg_catalog.set_config(
            'lock_timeout', ceil(extract(epoch FROM v_lease_left) * 1000)::bigint || 'ms', true);
    END IF;
    -- A part whose lease expired on its last attempt while the job was not
    -- running (paused, failed, canceled: no part claim fails it then) is
    -- failed for good all the same: its worker stopped answering and no
    -- claim may take it. It is queued again with the failed ones: left
    -- running, the resumed or retried job's first part claim failed it,
    -- and the job with it, without a single new attempt.
    UPDATE pgjobs.export_parts p
       SET status = 'queued', attempts = 0, lease_expires_at = NULL, updated_at = now()
     WHERE p.job_id = p_id
       AND (p.status = 'failed'
            OR (p.status = 'running' AND p.lease_expires_at <= now()
                AND p.attempts >= v_job.max_attempts));
    PERFORM pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
    SELECT count(*)::integer INTO v_parts FROM pgjobs.export_parts p WHERE p.job_id = p_id;
    IF v_parts > 0 OR coalesce((v_job.payload ->> 'parallel')::integer, 1) <= 1 THEN
        RETURN v_parts;
    END IF;

    v_reg := pgjobs._target(v_job.target);
    PERFORM pgjobs._require_submitter(v_job, v_reg);  -- 42501: a grant revoked since submit
    v_scope := pgjobs._scope_literal(v_reg, v_job.scope);
    EXECUTE format('SELECT count(*) FROM %s pgjobs_t WHERE %I = %s',
                   v_job.target, v_reg.scope_column, v_scope)
       INTO v_rows;
    -- At most the ceiling in force now: an export submitted before an
    -- administrator lowered it is held to it too (pgjobs._max_parallel).
    v_step := greatest(ceil(v_rows::numeric / least((v_job.payload ->> 'parallel')::integer,
                                                   pgjobs._max_parallel())), 1);
    -- Every v_step-th key, short of the last: the parts' upper bounds, each
    -- found v_step keys after the previous one by an index-only walk of the
    -- (scope, key) btree (ordered by both columns so that the planner takes
    -- it, and not the key's own index across every scope): one pass in all.
    v_bounds := '{}'::text[];
    WHILE (cardinality(v_bounds) + 1) * v_step < v_rows LOOP
        v_bound := pgjobs._nth_key(v_job.target, v_reg.scope_column, v_scope, v_reg.key_column,
                                   CASE WHEN cardinality(v_bounds) = 0 THEN ''
                                        ELSE format(' AND %I > %L::%s', v_reg.key_column,
                                                    v_bounds[cardinality(v_bounds)],
                                                    pgjobs._column_type(v_job.target,
                                                                        v_reg.key_column))
                                   END, v_step - 1);
        EXIT WHEN v_bound IS NULL;  -- rows deleted since the count
        v_bounds := v_bounds || v_bound;
    END LOOP;

    INSERT INTO pgjobs.export_parts (job_id, part, after_key, until_key)
    SELECT p_id, b.n::integer,
           CASE WHEN b.n > 1 THEN v_bounds[b.n - 1] END,
           CASE WHEN b.n <= cardinality(v_bounds) THEN v_bounds[b.n] END
      FROM generate_series(1, cardinality(v_bounds) + 1) AS b(n);
    RETURN cardinality(v_bounds) + 1;
END
$$;

COMMENT ON FUNCTION pgjobs.export_parts_split(bigint, text) IS
'Splits a claimed export submitted with parallel > 1 into key ranges of its scope sized evenly '
'(pgjobs.export_parts), once; returns the number of parts (0: exported whole).';
