CREATE OR REPLACE FUNCTION pgjobs._require_handler_trusted(p_handler regprocedure)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A backfill handler runs with the rights of the role pgjobs runs as
-- (current_user): its owner, who may replace its body at any time
-- (CREATE OR REPLACE FUNCTION), must have those rights already, the rule
-- pgjobs._untrusted_roles applies to a target's own code. Asked at submit
-- (pgjobs._handler, as pgjobs' owner) and before every page that calls it
-- (pgjobs._run_page, as the engine), since the function may change hands
-- or be replaced in between. Raises 42501. Locks nothing.
DECLARE
    v_owner oid;
BEGIN
    SELECT p.proowner INTO v_owner FROM pg_catalog.pg_proc p WHERE p.oid = p_handler;
    IF v_owner IS NULL THEN
        RAISE EXCEPTION 'backfill handler % does not exist (any more)', p_handler
            USING ERRCODE = '42883',
            HINT = 'Submit the backfill again with an existing handler.';
    END IF;
    IF NOT pg_has_role(v_owner, current_user, 'USAGE') THEN
        RAISE EXCEPTION 'pgjobs refuses backfill handler %: its owner % lacks the rights of '
                        'role %, which pgjobs runs as here', p_handler, v_owner::regrole,
                        current_user
            USING ERRCODE = '42501',
            HINT = 'A handler runs with the engine''s rights and its owner can replace its '
                   'body: have it owned by the role pgjobs runs as (ALTER FUNCTION ... OWNER '
                   'TO ...), or by a role with no fewer rights.';
    END IF;
END
$$;
