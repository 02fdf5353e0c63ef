CREATE OR REPLACE FUNCTION pgjobs._controlled_job(p_id bigint)
RETURNS pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Who may control a job (cancel, pause, resume, retry): one rule, one place.
-- Called by the SECURITY DEFINER bodies (pgjobs._cancel_as, _pause_as,
-- _resume_as, _retry_as) after pgjobs._enter, so every check is of
-- pgjobs._caller(): the submitter, an admin, or a role with the privilege
-- the job's kind needs on its target (42501), and only a job of a scope in
-- the session's pgjobs.allowed_scopes, if set (P0002 for a client, as the
-- policy hides it; 42501 for an admin). A job the caller may
-- not see (policy jobs_client_read) raises P0002 like an unknown id, before
-- any lock, so neither the error nor a wait tells it which ids exist.
-- A NULL id is a bad argument (22023), not an unknown job: "job <NULL> does
-- not exist" sent the caller looking for a job. Returns the job row.
-- Locks: the job row FOR UPDATE (waits for a claim or a page in flight on it,
-- or an ended export's cleanup: 55P03 with a hint naming the holder once the
-- caller's lock_timeout runs out).
DECLARE
    v_caller name := pgjobs._caller();
    v_job pgjobs.jobs;
    v_submitter boolean;
    v_found boolean;
BEGIN
    PERFORM pgjobs._require_job_id(p_id);  -- 22023 for NULL
    SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id;
    v_found := FOUND;
    -- The submitter: the very role, by oid (pgjobs._is_submitter), whatever
    -- it is called now; not one created again under its old name.
    v_submitter := pgjobs._is_submitter(v_caller, v_job.submitted_by, v_job.submitted_by_oid);
    -- Visible as policy jobs_client_read has it: the submitter's, or of a
    -- target the caller may read (SELECT on the table or on every one of
    -- its columns, pgjobs._reads_every_column, as the policy asks), and
    -- (for a client) of a scope in the session's pgjobs.allowed_scopes, if
    -- set. A job of another tenant is
    -- P0002 like an unknown id: a 42501 would say that it exists, and name
    -- that tenant's scope.
    IF v_found AND NOT (pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER')
                        OR ((v_submitter
                             OR (pgjobs._reads_every_column(v_caller, v_job.target)
                                 AND NOT pgjobs._row_security_rule(v_job.target,
                                                                   v_caller)))
                            AND pgjobs._scope_allowed(v_job.target, v_job.scope))) THEN
        v_job := NULL;
    ELSIF v_found THEN
        BEGIN
            SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id FOR UPDATE;
        EXCEPTION WHEN lock_not_available THEN
            -- The caller's lock_timeout ran out (55P03, kept): say who holds
            -- the row. An ended export's is its worker's cleanup, which holds
            -- it while it removes what the attempt wrote (a retry that came
            -- meanwhile would resume what it removes).
            RAISE EXCEPTION 'job % is busy: %', p_id,
                CASE WHEN v_job.kind = 'export' AND v_job.status IN ('canceled', 'failed')
                     THEN format('the export''s worker is removing what the %s attempt wrote',
                                 v_job.status)
                     ELSE 'another transaction holds its row (a claim or a page in flight '
                          'on it)' END
                USING ERRCODE = '55P03',
                HINT = CASE WHEN v_job.kind = 'export' AND v_job.status IN ('canceled', 'failed')
                            THEN 'The export''s worker is removing what the '
                                 || v_job.status || ' attempt wrote; try again in a moment.'
                            ELSE 'Try again in a moment, or with a longer lock_timeout.' END;
        END;
    END IF;
    IF v_job.id IS NULL THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002',
            HINT = 'List jobs with SELECT * FROM pgjobs.jobs; finished jobs are pruned '
                   'after the retention period.';
    END IF;
    PERFORM pgjobs._require_scope(v_job.target, v_job.scope);
    -- Whoever could have submitted the job may control it, and admins.
    IF NOT (pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER') OR v_submitter) THEN
        PERFORM pgjobs._require(v_job.target, pgjobs._kind_privilege(v_job.kind));
    END IF;
    RETURN v_job;
END
$$;
