-- pgjobs 0024: a client's view of pgjobs.jobs, decided once per statement
-- (issue 11). Policy jobs_client_read (0006) called the SECURITY DEFINER
-- PL/pgSQL function pgjobs._row_security_confines for every job row: a
-- client's count(*) over 100k jobs took 12 s, and pgjobs.stats() under a
-- client role 7-11 s during floods. The rule is unchanged: a client sees
-- the jobs it submitted, and the jobs of targets it may SELECT from that no
-- row-level security policy confines it on; with pgjobs.allowed_scopes set,
-- only those of the listed scopes, compared canonically. What changed is
-- where it is decided: once per statement (uncorrelated scalar subqueries,
-- so InitPlans), and each row compares its columns with the result:
-- * pgjobs._confined_targets(CURRENT_USER): the tables whose policies
--   confine the caller (pgjobs._row_security_confines applied to the few
--   tables with row security enabled);
-- * the allowed_scopes entries as written (a job whose scope is listed
--   verbatim), and pgjobs._allowed_scope_keys(): '<target oid>:<scope>' for
--   every registered, trusted target and every entry that is a value of
--   its scope column, the entry canonicalised as submits store scopes
--   (pgjobs._canonical_scope), so '01' allowed shows the jobs of scope 1.
--   pgjobs._scope_allowed was called per row before.
-- The functions below are stubs that sql/functions replaces on the same
-- migrate (a migration never calls a pgjobs function).
-- depends: 0022.stats

CREATE OR REPLACE FUNCTION pgjobs._confined_targets(p_role name)
RETURNS regclass[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT '{}'::pg_catalog.regclass[];
$$;

CREATE OR REPLACE FUNCTION pgjobs._allowed_scope_keys()
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT '{}'::pg_catalog.text[];
$$;

DROP POLICY jobs_client_read ON pgjobs.jobs;

CREATE POLICY jobs_client_read ON pgjobs.jobs AS PERMISSIVE FOR SELECT TO pgjobs_client
    USING ((submitted_by OPERATOR(pg_catalog.=) (SELECT CURRENT_USER)
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

COMMENT ON POLICY jobs_client_read ON pgjobs.jobs IS
    'A pgjobs_client sees the jobs it submitted and the jobs of targets it may SELECT from '
    '(unconfined by their row-level security), and, when the pgjobs.allowed_scopes setting is '
    'set, only those of the listed scopes.';

-- pgjobs.stats()'s oldest due queued job (ORDER BY run_at, id LIMIT 1):
-- without it, a flood of 100k queued jobs was sorted on every call (1-2 s
-- of stats() during floods, for administrators too); with it, the first
-- entry is the answer (the first visible one, for a client).
CREATE INDEX jobs_queued_run_at_idx ON pgjobs.jobs (run_at, id) WHERE status = 'queued';
