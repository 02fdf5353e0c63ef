-- pgjobs 0034: pgjobs.allowed_scopes may quote an entry ("x,acme" is one
-- scope). The list was split on every comma, so an application that put a
-- tenant's raw value containing a comma into it allowed another tenant as
-- well. pgjobs._allowed_scopes_parse now reads the list, once, for every
-- consumer; a malformed list (an open quote, text after a closing quote)
-- allows nothing. Policy jobs_client_read split the setting itself for its
-- verbatim test: it now takes the entries from
-- pgjobs._allowed_scope_entries() (an uncorrelated scalar subquery, an
-- InitPlan, as before), the rest as 0033 wrote it. The function below is a
-- stub that sql/functions replaces on the same migrate (a migration never
-- calls a pgjobs function); until then it allows nothing to a restricted
-- session and everything to an unrestricted one, as the old split did.
-- depends: 0033.submitter_oid

CREATE OR REPLACE FUNCTION pgjobs._allowed_scope_entries()
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN coalesce(pg_catalog.btrim(
                 pg_catalog.current_setting('pgjobs.allowed_scopes', true)), '') = ''
            THEN NULL ELSE '{}' END::pg_catalog.text[];
$$;

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
                OR scope OPERATOR(pg_catalog.=) ANY (
                       (SELECT pgjobs._allowed_scope_entries())::pg_catalog.text[])
                OR (target::pg_catalog.oid::pg_catalog.text OPERATOR(pg_catalog.||) ':'
                    OPERATOR(pg_catalog.||) scope) OPERATOR(pg_catalog.=) ANY (
                       (SELECT pgjobs._allowed_scope_keys())::pg_catalog.text[])));
