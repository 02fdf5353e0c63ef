CREATE OR REPLACE FUNCTION pgjobs._require_client_kept_room(p_submitter oid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A client's room for one more job kept in pgjobs.jobs, of any status: at
-- most set_defaults' max_jobs_kept_per_client (else 100000) jobs submitted
-- by the role of oid p_submitter, queued, running, paused and finished but
-- not yet pruned. Raises 55006 with a hint naming the setting and
-- pgjobs.prune. Why: a finished job keeps its row, payload, items and
-- import rejects until pgjobs.prune's retention, and max_pending_per_client
-- counts unfinished jobs only, so a client that submitted, canceled (or
-- failed) and submitted again in a loop was bounded by the retention alone.
-- Called by pgjobs._insert_job_row, the one path every submit of every kind
-- takes; not by a retry, which makes no new row. Administrators
-- (pgjobs_admin members, superusers: the caller, pgjobs._caller) are not
-- held to it, nor are jobs of a role that no longer exists (p_submitter
-- NULL). The count uses jobs_submitter_xact_idx and stops at the ceiling.
-- Counts under the client's lock (pgjobs._enter_client_room: shared for a
-- transaction's first submit, exclusive once it submitted a job of the
-- client), and near the ceiling (pgjobs._near_ceiling) takes it at
-- strength 'near' and counts again, as pgjobs._require_client_room does
-- and for the same reasons. Locks: the client's row of
-- pgjobs.client_room_locks.
DECLARE
    v_caller text;
    v_own boolean;
    v_max integer;
    v_kept integer;
    v_locked boolean;
BEGIN
    v_caller := pgjobs._caller();  -- once: it reads the call stack
    IF p_submitter IS NULL OR pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    v_own := coalesce(p_submitter = (SELECT r.oid FROM pg_catalog.pg_roles r
                                      WHERE r.rolname = v_caller), false);
    v_max := coalesce((pgjobs._defaults() ->> 'max_jobs_kept_per_client')::integer, 100000);
    v_locked := pgjobs._enter_client_room(p_submitter, v_own);
    SELECT count(*) INTO v_kept
      FROM (SELECT 1 FROM pgjobs.jobs j WHERE j.submitted_by_oid = p_submitter LIMIT v_max) s;
    IF NOT v_locked AND pgjobs._near_ceiling(v_kept, v_max) THEN
        PERFORM pgjobs._lock_client_room(p_submitter, 'near', v_own);
        SELECT count(*) INTO v_kept  -- again, under the lock
          FROM (SELECT 1 FROM pgjobs.jobs j
                 WHERE j.submitted_by_oid = p_submitter LIMIT v_max) s;
    END IF;
    IF v_kept >= v_max THEN
        RAISE EXCEPTION 'role % already has % jobs kept (queued, running, paused, or finished '
                        'and not yet pruned), the most an administrator allows a client',
                        coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                   WHERE r.oid = p_submitter)::text, p_submitter::text), v_max
            USING ERRCODE = '55006',
            HINT = format('Ask an administrator to prune finished jobs sooner with '
                          'SELECT pgjobs.prune(''1 hour'') (or pgjobs prune --retention), or '
                          'to raise the ceiling with '
                          'pgjobs.set_defaults(''{"max_jobs_kept_per_client": N}'') (now %s).',
                          v_max);
    END IF;
END
$$;

COMMENT ON FUNCTION pgjobs._require_client_kept_room(oid) IS
'Raises 55006 when the role of the given oid, not an administrator, already has '
'set_defaults'' max_jobs_kept_per_client jobs (default 100000) in pgjobs.jobs, finished or not: '
'finished jobs keep their data until pgjobs.prune. Called by every submit of every kind.';
