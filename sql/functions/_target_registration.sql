CREATE OR REPLACE FUNCTION pgjobs._target_registration(p_target regclass)
RETURNS pgjobs.target_registry
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The registration of p_target, judged against the table as it is now:
-- every check of pgjobs._target but trust, in the same order. Raises 22023
-- when the table is not registered (42501 first, registered or not, for a
-- client call whose caller lacks a privilege the call needs:
-- pgjobs._require_entry). The registered columns are judged again as the
-- table is now (pgjobs._registration_problem, register_target's own rule):
-- ALTER TABLE after registration (a scope column given a nondeterministic
-- collation, say, under which one tenant's scope matches another's rows)
-- is refused with register_target's error until the target is registered
-- again. Not cached on the columns' (attnum, atttypid, attcollation): the
-- verdict also reads operators, operator classes, casts and types (an `=`
-- for an enum scope created in another schema refuses the target, and
-- leaves pg_attribute as it was); the hot read path uses
-- pgjobs._target_recent's 1 s window instead. pgjobs._target adds the
-- trust check (pgjobs._require_trusted); a delete or backfill page's full
-- check adds pgjobs._trust_verdict instead, which walks the target's reach
-- once for the check and for the roles its verdict keeps. Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_problem record;
    v_caller name;
BEGIN
    IF p_target IS NULL THEN
        RAISE EXCEPTION 'target must not be NULL'
            USING ERRCODE = '22023',
                  HINT = 'Pass a registered table, e.g. ''public.user_table_rows''.';
    END IF;

    -- In a client call (pgjobs._enter set pgjobs.caller): a caller that
    -- lacks a privilege its call needs (pgjobs._require_entry: decided from
    -- the call, not from the registration) is refused before the
    -- registration is read, with the same error whether pgjobs knows the
    -- table or not (a "not registered" for one and a privilege error for
    -- the other told any client which tables are registered). An
    -- administrator may read the registry anyway; the engine's own paths
    -- (no client call) are as before.
    PERFORM pgjobs._require_entry(p_target);
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not registered with pgjobs', p_target
            USING ERRCODE = '22023',
                  HINT = format('SELECT pgjobs.register_target(%L, p_key => ..., p_scope => ..., '
                                'p_created_at => ..., p_document => ...);', p_target::text);
    END IF;
    SELECT p.message, p.hint, p.errcode INTO v_problem
      FROM pgjobs._registration_problem(p_target, v_reg.key_column, v_reg.scope_column,
                                        v_reg.created_at_column, v_reg.document_column,
                                        true) p;
    IF v_problem.message IS NULL THEN
        -- Another registered table of its partition or inheritance tree
        -- (attached since: register_target refuses the second one).
        SELECT p.message, p.hint, p.errcode INTO v_problem
          FROM pgjobs._relative_problem(p_target) p;
    END IF;
    IF v_problem.message IS NOT NULL THEN
        -- Told only to a role that may use the table: the problem names its
        -- columns and types, the hint lists them. Any other role (the caller
        -- of a client call, pgjobs._caller) learns what it learns from the
        -- privilege check that comes after this one on a sound table, so the
        -- checks keep their order: no privilege, nothing about the columns.
        v_caller := pgjobs._caller();
        IF NOT pgjobs._may_use_table(v_caller, p_target) THEN
            RAISE EXCEPTION 'permission denied: role % has no privilege on %', v_caller, p_target
                USING ERRCODE = '42501',
                      HINT = 'Ask the owner of the table for the privilege the job or read '
                             'needs (SELECT, DELETE, UPDATE or INSERT).';
        END IF;
        RAISE EXCEPTION '% (%)', v_problem.message, pgjobs._registration_change(v_reg)
            USING ERRCODE = v_problem.errcode,
                  HINT = v_problem.hint || ' Then register it again with pgjobs.register_target.';
    END IF;
    RETURN v_reg;
END
$function$;
