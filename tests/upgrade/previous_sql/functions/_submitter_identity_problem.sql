CREATE OR REPLACE FUNCTION pgjobs._submitter_identity_problem(
    p_role name,
    p_oid oid,
    OUT message text,
    OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether role p_role is still the role it was, in a form that does not
-- raise: both NULL when a role of that name exists and, p_oid given, has
-- that oid; else the message and hint of the 42501 its callers raise. A
-- role dropped and created again under the name is someone else, and its
-- rights are not the job's (the oid is kept in pgjobs.jobs since migration
-- 0033; a job's checks pass oid 0 for a job without one, which no role
-- has; p_oid NULL judges by name alone: a caller that only needs the role
-- to exist). Identity only, no privilege: the one
-- lookup of the role that every check of it makes first
-- (pgjobs._submitter_problem at claim and page, pgjobs._role_problem at
-- submit and read), and all that an import batch adds to the grants its
-- own statement checks column by column (pgjobs._import_insert_sql).
-- One syscache lookup (to_regrole), no query to plan. Locks nothing.
DECLARE
    v_oid oid := to_regrole(quote_ident(p_role));
BEGIN
    IF v_oid IS NOT NULL AND (p_oid IS NULL OR v_oid = p_oid) THEN
        RETURN;
    END IF;
    IF v_oid IS NOT NULL THEN
        message := format('permission denied: role %s is not the role that submitted '
                          'the job (that one was dropped or renamed, and this one took '
                          'its name)', p_role);
        hint := format('A job acts with the rights of the role that submitted it. If %I '
                       'should run it, submit it again as %I.', p_role, p_role);
        RETURN;
    END IF;
    message := format('permission denied: role %s does not exist (any more)', p_role);
    hint := 'Submit the job again as an existing role.';
END
$$;
