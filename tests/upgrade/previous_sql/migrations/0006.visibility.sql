-- pgjobs 0006: who sees what (issue 9, items 12 and 13).
--
-- Jobs: a pgjobs_client sees a job only when it submitted it or may read
-- (SELECT) its target unconfined by row-level security, and, when the session sets pgjobs.allowed_scopes,
-- only jobs of those scopes, compared canonically by
-- pgjobs._scope_allowed (the stub below keeps 0004's text comparison until
-- sql/functions/_scope_allowed.sql replaces it on the same migrate).
-- A job's filter, exclusions, predicate, result URIs and error name rows
-- of its target, so they are as private as the target itself.
--
-- Targets: the pgjobs.targets view lists only the tables the caller may
-- read (admins: all). security_barrier: a caller's own leaky functions in
-- a WHERE clause see only the rows the view lets through.
--
-- Settings: pgjobs.settings holds administrator defaults (set through
-- pgjobs.set_defaults) and the secret that pgjobs.channel derives
-- per-(target, scope) NOTIFY channel names from. No client may read it
-- (zz_grants.sql grants nothing on it to pgjobs_client).
-- depends: 0004.tenancy

CREATE OR REPLACE FUNCTION pgjobs._scope_allowed(p_target regclass, p_scope text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(pg_catalog.btrim(
           pg_catalog.current_setting('pgjobs.allowed_scopes', true)), '') = ''
    OR p_scope = ANY (pg_catalog.regexp_split_to_array(
           pg_catalog.btrim(pg_catalog.current_setting('pgjobs.allowed_scopes', true)),
           '\s*,\s*'));
$$;

-- Stub: sql/functions/_row_security_confines.sql holds the rule (whether a
-- row-level security policy on the target confines the role) and replaces
-- this on the same migrate; the policy and the view below only need it to
-- exist.
CREATE OR REPLACE FUNCTION pgjobs._row_security_confines(p_target regclass, p_role name)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT true;
$$;

DROP POLICY jobs_client_scopes ON pgjobs.jobs;

CREATE POLICY jobs_client_read ON pgjobs.jobs AS PERMISSIVE FOR SELECT TO pgjobs_client
    USING ((submitted_by = CURRENT_USER
            OR (coalesce(pg_catalog.has_table_privilege(target, 'SELECT'), false)
                -- A role that a policy on the target confines may not read
                -- other roles' jobs there: their filters name rows it cannot see.
                AND NOT pgjobs._row_security_confines(target, CURRENT_USER)))
           -- The common case (no tenancy setting) needs no function call per row.
           AND (coalesce(pg_catalog.btrim(
                    pg_catalog.current_setting('pgjobs.allowed_scopes', true)), '') = ''
                OR pgjobs._scope_allowed(target, scope)));

COMMENT ON POLICY jobs_client_read ON pgjobs.jobs IS
    'A pgjobs_client sees the jobs it submitted and the jobs of targets it may SELECT from, '
    'and, when the pgjobs.allowed_scopes setting is set, only those of the listed scopes.';

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
    OR (coalesce(pg_catalog.has_table_privilege(r.target, 'SELECT'), false)
        AND NOT pgjobs._row_security_confines(r.target, CURRENT_USER));

CREATE TABLE pgjobs.settings (
    key        text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE pgjobs.settings IS
    'Administrator defaults (key ''defaults'', set with pgjobs.set_defaults) and the engine''s '
    'secret for channel names (key ''channel_secret''). Not readable by clients.';

-- 256 random bits from the server's strong random source (gen_random_uuid).
INSERT INTO pgjobs.settings (key, value)
VALUES ('channel_secret', pg_catalog.to_jsonb(pg_catalog.encode(pg_catalog.sha256(
            pg_catalog.convert_to(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
                                  || pg_catalog.gen_random_uuid()::text, 'UTF8')), 'hex'))),
       ('defaults', '{}');
