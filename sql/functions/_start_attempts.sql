CREATE OR REPLACE FUNCTION pgjobs._start_attempts(p_ids bigint[], p_worker text,
                                                  p_lease interval)
RETURNS SETOF pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $$
-- Starts one attempt of each queued job in p_ids for p_worker: the only
-- place a job becomes `running`, used by every claiming path (pgjobs.claim,
-- claim_export, claim_import, pgjobs._claim_id). Each job gets its own claim
-- identity in `worker` (p_worker#token, pgjobs._claim_identity: the fence of
-- every later call), attempts + 1, a lease of the job's own `lease` option
-- or else p_lease, heartbeat_at and updated_at now, started_at on the first
-- attempt, and run_at no later than now (a job started early by run_job
-- does not show a future run_at while it runs). Announces `started` for
-- each (pgjobs._notify_many, one statement). Returns the started rows, in
-- the order of p_ids (the claim's pick order); ids that are not queued are left alone.
--
-- Every attempt starts with its submitter's rights checked, once
-- (pgjobs._may_start_attempt: what the submit needed, as retry and resume
-- check it): a job whose submitter lost a right since (a REVOKE, row-level
-- security, the role dropped, the target no longer trusted) fails here,
-- before it touches another row, and is not returned; the caller may pick
-- again. Jobs of one claim that share submitter, target, kind and
-- on_duplicate share one check, except the first attempt of a delete or
-- backfill, or any attempt of an export whose deferred typo guard is still
-- pending (payload unchecked_fields), whose check also reads the job itself
-- (its scope's imports, its unchecked paths): never shared. (A delete's or
-- backfill's deferred guard is its first page's: pgjobs._run_page.)
--
-- The caller has chosen the jobs (due, the writer gate) and locked their
-- rows in this transaction (FOR UPDATE, or SKIP LOCKED to never wait for
-- another claimer). Locks: those rows, and the row of each started writer's
-- successor in its scope's queue, whose queued_at it moves to now (the
-- turn between scopes passes on: pgjobs._pass_writer_turn, SKIP LOCKED:
-- never waits).
--
-- Plans: generic (plan_cache_mode; see pgjobs.claim): a custom plan for
-- one id looked cheaper than the generic one, so both statements were
-- planned again at every claim of one job, for the same jobs_pkey scan.
DECLARE
    v_jobs pgjobs.jobs[];
    v_job pgjobs.jobs;
    v_ids bigint[] := '{}'::bigint[];
    v_allowed text[] := '{}'::text[];
    v_key text;
    v_left pgjobs.jobs[] := '{}'::pgjobs.jobs[];
BEGIN
    FOR v_job IN SELECT j.* FROM pgjobs.jobs j WHERE j.id = ANY (p_ids) AND j.status = 'queued'
    LOOP
        IF v_job.writes THEN
            v_left := v_left || v_job;
        END IF;
        -- The values the check reads, as a JSON array: a role's name may hold
        -- spaces and a custom payload's on_duplicate any text, so joined by
        -- spaces two different jobs could spell one key.
        -- A first attempt of a delete or backfill, or of an export with a
        -- deferred typo guard, is also judged on what is its own
        -- (pgjobs._may_start_attempt: an import of its scope after it, the
        -- paths its submit could not judge): its key names it, so
        -- another job of the same submitter, target and kind (another
        -- scope) never passes on its check.
        v_key := jsonb_build_array(v_job.submitted_by, v_job.submitted_by_oid,
                                   v_job.target::oid, v_job.kind,
                                   v_job.payload ->> 'on_duplicate',
                                   CASE WHEN (v_job.started_at IS NULL
                                              AND v_job.kind = ANY (pgjobs._engine_kinds()))
                                             OR (v_job.kind = 'export'
                                                 AND v_job.payload ? 'unchecked_fields')
                                        THEN v_job.id END)::text;
        IF v_key = ANY (v_allowed) THEN
            v_ids := v_ids || v_job.id;
        ELSIF pgjobs._may_start_attempt(v_job) THEN
            v_allowed := v_allowed || v_key;
            v_ids := v_ids || v_job.id;
        END IF;
    END LOOP;
    WITH started AS (
        UPDATE pgjobs.jobs j
           SET status = 'running',
               worker = pgjobs._claim_identity(p_worker),
               attempts = j.attempts + 1,
               lease = coalesce((j.options ->> 'lease')::interval, p_lease),
               lease_expires_at = now() + coalesce((j.options ->> 'lease')::interval, p_lease),
               heartbeat_at = now(),
               run_at = least(j.run_at, now()),
               started_at = coalesce(j.started_at, now()),
               updated_at = now()
         WHERE j.id = ANY (v_ids)
           AND j.status = 'queued'
        RETURNING j AS job)
    SELECT array_agg(s.job ORDER BY array_position(p_ids, (s.job).id)) INTO v_jobs
      FROM started s;
    -- The turn between scopes passes on (pgjobs._pass_writer_turn): from
    -- each writer that left the queue here, started or failed at its start
    -- (a claim of no writer, an export's or a custom job's, skips the call).
    IF cardinality(v_left) > 0 THEN
        PERFORM pgjobs._pass_writer_turn(v_left);
    END IF;
    PERFORM pgjobs._notify_many(v_jobs, 'started');
    RETURN QUERY SELECT * FROM unnest(v_jobs);
END
$$;
