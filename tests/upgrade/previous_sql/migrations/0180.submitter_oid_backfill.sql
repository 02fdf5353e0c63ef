-- pgjobs 0180: every job names its submitter by oid. Migration 0033 left
-- submitted_by_oid NULL for the jobs made before it, and every check judged
-- those by the name at submit: their client lost them when renamed (its
-- own cancel, pause, resume, retry and add_items found no job), and a role
-- created later under a dropped submitter's name saw them, controlled them
-- and ran them with its own rights; they counted toward no client's room.
-- Now each gets the oid of the role that has its name at this upgrade: the
-- role it already acted as (nothing older tells which role submitted it).
-- A job whose submitter no role had the name of here keeps NULL, and is no
-- role's from now on (pgjobs._is_submitter, pgjobs._submitter_problem): no
-- client sees or controls it as its own (an administrator, or a role that
-- may read its target, as any other's job), and it runs with nobody's
-- rights: it fails at its next start, naming the gone role. Policy
-- jobs_client_read (0163) loses its by-name branch; the rest as 0163 wrote
-- it. Its jobs' kept_bytes stay uncounted (NULL: no oid ever counted
-- them), so the client's running total is right as it stands. One pass
-- over the jobs (those of NULL oid only are written); jobs in flight run
-- on.
-- depends: 0163.submitter_by_oid

UPDATE pgjobs.jobs j
   SET submitted_by_oid = r.oid
  FROM pg_catalog.pg_roles r
 WHERE j.submitted_by_oid IS NULL
   AND r.rolname OPERATOR(pg_catalog.=) j.submitted_by;

COMMENT ON COLUMN pgjobs.jobs.submitted_by_oid IS
    'The oid of the role that submitted the job (since migration 0180 for a job made before '
    'migration 0033: the role that had its name at that upgrade). NULL: its submitter was gone '
    'then, and the job is no role''s own.';

ALTER POLICY jobs_client_read ON pgjobs.jobs
    USING ((submitted_by_oid OPERATOR(pg_catalog.=) (
                SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
            OR ((coalesce(pg_catalog.has_table_privilege(target, 'SELECT'), false)
                 -- SELECT on every column of the target (column grants):
                 -- asked only of a row the table check refused.
                 OR target OPERATOR(pg_catalog.=) ANY (
                        (SELECT pgjobs._column_read_targets())::pg_catalog.regclass[]))
                -- A role that a policy on the target confines may not read
                -- other roles' jobs there: their filters name rows it cannot see.
                -- (The cast makes the subquery a scalar, one array: an InitPlan.)
                AND target OPERATOR(pg_catalog.<>) ALL (
                    (SELECT pgjobs._confined_targets(CURRENT_USER))::pg_catalog.regclass[])))
           -- The common case (no tenancy setting) costs no call per row.
           AND ((SELECT coalesce(pg_catalog.btrim(
                     pg_catalog.current_setting('pgjobs.allowed_scopes', true)), '') = '')
                OR scope OPERATOR(pg_catalog.=) ANY (
                       (SELECT pgjobs._allowed_scope_entries())::pg_catalog.text[])
                OR (target::pg_catalog.oid::pg_catalog.text OPERATOR(pg_catalog.||) ':'
                    OPERATOR(pg_catalog.||) scope) OPERATOR(pg_catalog.=) ANY (
                       (SELECT pgjobs._allowed_scope_keys())::pg_catalog.text[])));

COMMENT ON POLICY jobs_client_read ON pgjobs.jobs IS
    'A pgjobs_client sees the jobs it submitted (the very role, by oid, whatever it is called '
    'now; a job without an oid is no role''s) and the jobs of targets it may SELECT from (on '
    'the table, or on every one of its columns; unconfined by their row-level security), and, '
    'when the pgjobs.allowed_scopes setting is set, only those of the listed scopes.';
