CREATE OR REPLACE FUNCTION pgjobs.canonical_scope(p_target regclass, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The text pgjobs.jobs.scope holds for scope p_scope of p_target, for
-- reading job rows by scope (the dashboard's ?scope= filter): on a
-- registered, trusted target the caller may read or has jobs on, p_scope
-- cast to the scope column's type and printed back
-- (pgjobs._canonical_scope, as every submit stores it: '01' and ' 1' of an
-- integer scope are '1'), NULL when it is no value of that column; on any
-- other table p_scope unchanged, the same answer for a table pgjobs never
-- saw as for one the caller may not read. Acts on nothing and reads no row
-- of the target, so pgjobs.allowed_scopes is not asked (a job row outside
-- it stays hidden by the row policy of pgjobs.jobs). Never raises for a
-- value; a NULL target or scope raises 22023. For pgjobs_client. Locks
-- nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._canonical_scope_as checks that
-- role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._canonical_scope_as(current_user, p_target, p_scope) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.canonical_scope(regclass, text) IS
'The text pgjobs.jobs.scope holds for this scope of the target (what a submit stores): on a '
'registered target the caller may read, the scope cast to the scope column''s type and printed '
'back (''01'' and '' 1'' of an integer scope are ''1''), NULL when it is no value of that column; '
'on any other table the scope unchanged. For reading jobs by scope: WHERE scope = '
'pgjobs.canonical_scope(target, ''01''). Acts on nothing.';
