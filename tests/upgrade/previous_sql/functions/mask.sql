CREATE OR REPLACE FUNCTION pgjobs.mask(p_target regclass, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The read-path mask of (p_target, p_scope): a boolean SQL expression over
-- the target's unqualified column names that is false exactly for the rows
-- a queued or running delete job will delete, and true for every other
-- row ('true' when no delete is pending). It is built from the jobs'
-- stored predicates, the same text the runner's pages use, so a read in
-- the middle of a job returns what it will return after it. Cancel or
-- failure ends the job, which lifts its mask from the rows that remain.
-- For pgjobs_client; needs SELECT on the target and,
-- when pgjobs.allowed_scopes is set, p_scope in it (42501).
-- Locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._mask_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._mask_as(current_user, p_target, p_scope) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.mask(regclass, text) IS
'A boolean SQL expression over the target''s unqualified columns, false for rows that pending '
'(queued or running) delete jobs of the scope will delete; ''true'' when none is pending. Add '
'it to every read of the target: SELECT ... WHERE table_id = $1 AND <mask>.';
