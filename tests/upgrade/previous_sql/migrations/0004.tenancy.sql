-- pgjobs 0004: tenancy. When a session sets `pgjobs.allowed_scopes` (a
-- comma-separated list of scopes; unset or empty means no restriction), a
-- pgjobs_client sees only the jobs of those scopes in pgjobs.jobs. The
-- client functions (submit*, cancel, mask, visible, visible_count) enforce
-- the same list themselves (pgjobs._require_scope); this is the read side
-- for direct SELECTs on the table. docs/operations.md, "Tenancy", says who
-- sets the variable and what it does and does not protect against.
--
-- FORCE: the table owner is subject to the policies too (superusers and
-- BYPASSRLS roles never are), so the owner and pgjobs_admin get
-- unrestricted policies: the engine (claim, heartbeat, complete, run,
-- prune...) runs as an admin or the owner and must see every job, and the
-- SECURITY DEFINER client functions run as the owner and check the caller
-- themselves. The owner is looked up at each query rather than named here,
-- so `ALTER TABLE pgjobs.jobs OWNER TO ...` keeps working. The policy
-- expressions are inline: a migration never calls a pgjobs function, and a
-- client must be able to evaluate them without EXECUTE on private helpers.
-- depends: 0001.initial

ALTER TABLE pgjobs.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgjobs.jobs FORCE ROW LEVEL SECURITY;

CREATE POLICY jobs_admin ON pgjobs.jobs AS PERMISSIVE FOR ALL TO pgjobs_admin
    USING (true) WITH CHECK (true);

CREATE POLICY jobs_owner ON pgjobs.jobs AS PERMISSIVE FOR ALL TO PUBLIC
    USING ((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
              FROM pg_catalog.pg_class c WHERE c.oid = 'pgjobs.jobs'::pg_catalog.regclass))
    WITH CHECK ((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                   FROM pg_catalog.pg_class c
                  WHERE c.oid = 'pgjobs.jobs'::pg_catalog.regclass));

-- Elements are trimmed; the comparison is on the text exactly as submitted
-- (pgjobs.jobs.scope), so '01' is not '1': a mismatch denies, never grants.
CREATE POLICY jobs_client_scopes ON pgjobs.jobs AS PERMISSIVE FOR SELECT TO pgjobs_client
    USING (
        (SELECT coalesce(pg_catalog.btrim(
                    pg_catalog.current_setting('pgjobs.allowed_scopes', true)), '') = '')
        OR scope IN (SELECT pg_catalog.unnest(pg_catalog.regexp_split_to_array(
                         pg_catalog.btrim(
                             pg_catalog.current_setting('pgjobs.allowed_scopes', true)),
                         '\s*,\s*'))));

COMMENT ON POLICY jobs_client_scopes ON pgjobs.jobs IS
    'A pgjobs_client sees only the jobs of the scopes listed in the pgjobs.allowed_scopes '
    'setting (comma-separated), or every job when it is unset or empty.';
