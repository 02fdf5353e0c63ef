-- pgjobs 0033: a job remembers which role submitted it, not only its name.
-- A job acts with its submitter's rights, looked up by the name in
-- submitted_by; a role dropped and then created again under the same name
-- (by an administrator, for someone else, say) inherited every queued,
-- retrying or paused job of the old one, and those jobs went on with the
-- new role's rights. submitted_by_oid is the submitting role's oid, set at
-- submit; every check of the submitter (pgjobs._submitter_problem, at each
-- claim, page, chunk and import start, and retry and resume) and the
-- submitter's right to control its job (pgjobs._controlled_job) and to see
-- it (policy jobs_client_read, rewritten below with that one condition
-- added, the rest as 0024 wrote it) now ask for that very role. Jobs
-- submitted before this migration have NULL here and are judged by name,
-- as before. Catalog only: a nullable column without a default rewrites
-- nothing.
-- depends: 0032.stopped_exclusion_probes

ALTER TABLE pgjobs.jobs ADD COLUMN submitted_by_oid oid;

COMMENT ON COLUMN pgjobs.jobs.submitted_by_oid IS
    'The oid of the role that submitted the job (NULL for jobs submitted before migration '
    '0033): a role dropped and created again under the same name is not that role.';

-- The submitter's own jobs: by name, and by oid when the job has one (an
-- uncorrelated scalar subquery: an InitPlan, once per statement, as 0024's).
ALTER POLICY jobs_client_read ON pgjobs.jobs
    USING (((submitted_by OPERATOR(pg_catalog.=) (SELECT CURRENT_USER)
             AND (submitted_by_oid IS NULL
                  OR submitted_by_oid OPERATOR(pg_catalog.=) (
                      SELECT r.oid FROM pg_catalog.pg_roles r
                       WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)))
            OR (coalesce(pg_catalog.has_table_privilege(target, 'SELECT'), false)
                -- A role that a policy on the target confines may not read
                -- other roles' jobs there: their filters name rows it cannot see.
                -- (The cast makes the subquery a scalar, one array: an InitPlan.)
                AND target OPERATOR(pg_catalog.<>) ALL (
                    (SELECT pgjobs._confined_targets(CURRENT_USER))::pg_catalog.regclass[])))
           -- The common case (no tenancy setting) costs no call per row.
           AND ((SELECT coalesce(pg_catalog.btrim(
                     pg_catalog.current_setting('pgjobs.allowed_scopes', true)), '') = '')
                OR scope OPERATOR(pg_catalog.=) ANY ((SELECT pg_catalog.regexp_split_to_array(
                       pg_catalog.btrim(pg_catalog.current_setting('pgjobs.allowed_scopes', true)),
                       '\s*,\s*'))::pg_catalog.text[])
                OR (target::pg_catalog.oid::pg_catalog.text OPERATOR(pg_catalog.||) ':'
                    OPERATOR(pg_catalog.||) scope) OPERATOR(pg_catalog.=) ANY (
                       (SELECT pgjobs._allowed_scope_keys())::pg_catalog.text[])));
