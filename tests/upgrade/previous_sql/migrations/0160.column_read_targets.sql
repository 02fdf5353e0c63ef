-- pgjobs 0160: SELECT granted on every column of a target counts as SELECT
-- on it in policy jobs_client_read and view pgjobs.targets too, as it does
-- in the engine's privilege checks since stop 58 (pgjobs._reads_every_column):
-- a role granted SELECT (a, b, c) ON t, every column of t, submitted and
-- read pages there but saw no other role's job on t in pgjobs.jobs and not
-- t in pgjobs.targets, one refusal too many. Both still ask the table
-- grant first, per row as before (one ACL lookup); only where it fails do
-- they compare the target with pgjobs._column_read_targets(), the tables
-- the calling role reads through column grants, one array per statement (an
-- InitPlan, evaluated at its first use: a statement whose rows all pass the
-- table check never computes it). The rest of each as 0034 and 0006 wrote
-- it. The function below is a stub that sql/functions replaces on the same
-- migrate (a migration never calls a pgjobs function); until then it lists
-- nothing, and both answer as before.
-- depends: 0146.client_kept_bytes

CREATE OR REPLACE FUNCTION pgjobs._column_read_targets()
RETURNS pg_catalog.regclass[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT '{}'::pg_catalog.regclass[];
$$;

ALTER POLICY jobs_client_read ON pgjobs.jobs
    USING (((submitted_by OPERATOR(pg_catalog.=) (SELECT CURRENT_USER)
             AND (submitted_by_oid IS NULL
                  OR submitted_by_oid OPERATOR(pg_catalog.=) (
                      SELECT r.oid FROM pg_catalog.pg_roles r
                       WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)))
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
    'A pgjobs_client sees the jobs it submitted and the jobs of targets it may SELECT from (on '
    'the table, or on every one of its columns; unconfined by their row-level security), and, '
    'when the pgjobs.allowed_scopes setting is set, only those of the listed scopes.';

CREATE OR REPLACE VIEW pgjobs.targets WITH (security_barrier) AS
SELECT r.target,
       r.key_column       AS key,
       r.scope_column     AS scope,
       r.created_at_column AS created_at,
       r.document_column  AS document,
       r.key_type,
       r.scope_type,
       r.options,
       c.reltuples::bigint AS estimated_rows,
       r.registered_at,
       r.updated_at
  FROM pgjobs.target_registry r
  LEFT JOIN pg_catalog.pg_class c ON c.oid = r.target
 WHERE pg_catalog.pg_has_role('pgjobs_admin', 'USAGE')
    OR ((coalesce(pg_catalog.has_table_privilege(r.target, 'SELECT'), false)
         OR r.target OPERATOR(pg_catalog.=) ANY (
                (SELECT pgjobs._column_read_targets())::pg_catalog.regclass[]))
        AND NOT pgjobs._row_security_confines(r.target, CURRENT_USER));
