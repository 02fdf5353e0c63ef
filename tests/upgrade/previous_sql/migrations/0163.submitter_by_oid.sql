-- pgjobs 0163: a client's own jobs are the ones its role submitted, by oid
-- alone, whatever the role is called now. Policy jobs_client_read asked for
-- the submitter's name AND its oid (0033): a client renamed after it
-- submitted (ALTER ROLE a RENAME TO b) no longer saw its own jobs on a
-- target it may not read, nor their items and exclusions (their policies
-- read pgjobs.jobs), and pgjobs._controlled_job and _keep_client_bytes
-- refused it its own cancel, pause, resume, retry and add_items. Now the
-- name is asked only of a job without an oid (submitted before 0033); one
-- with an oid is the submitter's when the caller is that very role (an
-- InitPlan, once per statement, as before): a role created under a
-- dropped submitter's name sees none of its jobs, as since 0033. The
-- functions follow the same rule (pgjobs._is_submitter). The rest of the
-- policy as 0160 wrote it. Index jobs_submitter_target_idx serves
-- pgjobs._has_jobs_on (a session's tenancy keys cover the targets a client
-- has jobs on), which asks by oid now: one probe per target, as
-- jobs_submitter_idx (0045) gives by name; that one stays for the jobs
-- without an oid. Catalog and one index build (both columns are fixed at
-- submit, so job updates stay HOT); no data changes, jobs in flight run on.
-- depends: 0161.item_pages

ALTER POLICY jobs_client_read ON pgjobs.jobs
    USING ((((submitted_by_oid IS NULL
              AND submitted_by OPERATOR(pg_catalog.=) (SELECT CURRENT_USER))
             OR submitted_by_oid OPERATOR(pg_catalog.=) (
                    SELECT r.oid FROM pg_catalog.pg_roles r
                     WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER))
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
    'now; by name for a job submitted before migration 0033) and the jobs of targets it may '
    'SELECT from (on the table, or on every one of its columns; unconfined by their row-level '
    'security), and, when the pgjobs.allowed_scopes setting is set, only those of the listed '
    'scopes.';

CREATE INDEX jobs_submitter_target_idx ON pgjobs.jobs (submitted_by_oid, target);
