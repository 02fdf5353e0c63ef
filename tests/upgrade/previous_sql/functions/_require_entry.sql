-- The signature before the running call could be passed in (the stop-48
-- release's): dropped so that no install keeps both.
DROP FUNCTION IF EXISTS pgjobs._require_entry(regclass, text);

CREATE OR REPLACE FUNCTION pgjobs._require_entry(p_target regclass, p_privilege text DEFAULT NULL,
                                                 p_call text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The first check of a client call (pgjobs._enter; read through
-- pgjobs._entered, so a client's own setting counts for nothing) on
-- p_target, made before anything reads the registry: the caller holds
-- every privilege the call needs, decided from the call alone, never from
-- the registration. p_privilege (comma-separated, each required) where the
-- arguments decide it (pgjobs.submit and submit_items: the kind's,
-- pgjobs._kind_privilege; preview: its kind's and SELECT; submit_import:
-- INSERT, and with on_duplicate "update" also UPDATE and SELECT); NULL:
-- the entry's own (pgjobs._entry_privilege of the entry).
-- Table-level privileges, as the checks after it ask them (SELECT: on the
-- table or on every one of its columns, pgjobs._reads_every_column), except for
-- submit_import, whose columns are known only from the registration and
-- the source: there the privilege on any one column. An entry that names
-- none (a job's target: add_items) needs some privilege on the table
-- (pgjobs._may_use_table). Raises 42501 naming the first one missing, the
-- same for a registered table as for any other: "not registered" (22023)
-- for one and "lacks DELETE" for the other told a client with SELECT
-- alone which tables pgjobs knows. Permission before existence, as in
-- PostgreSQL. Not a client call, or an administrator (who may read
-- pgjobs.target_registry): nothing to check. pgjobs._target and
-- pgjobs._target_recent, the registry's doors, call it first; an entry
-- whose arguments decide calls it before them. p_call: the running call
-- as ARRAY[entry, caller], passed by an internal that has just had it from
-- pgjobs._enter (the hot read path: a read of pgjobs._entered, the call
-- stack and a seal, is ~80 us of every read; issue 11); NULL: read
-- through pgjobs._entered. Never a client's value: no client may call
-- this. Locks nothing.
DECLARE
    v_call text[] := coalesce(p_call, pgjobs._entered());
    v_caller name := v_call[2];
    v_entry text := v_call[1];
    v_needs text;
    v_any_column boolean;
    v_privilege text;
BEGIN
    IF v_caller IS NULL OR p_target IS NULL
       OR pg_catalog.pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    v_needs := coalesce(p_privilege, pgjobs._entry_privilege(v_entry));
    IF v_needs IS NULL THEN
        IF NOT pgjobs._may_use_table(v_caller, p_target) THEN
            RAISE EXCEPTION 'permission denied: role % has no privilege on %', v_caller, p_target
                USING ERRCODE = '42501',
                      HINT = 'Ask the owner of the table for the privilege the job or read '
                             'needs (SELECT, DELETE, UPDATE or INSERT).';
        END IF;
        RETURN;
    END IF;
    v_any_column := v_entry IS NOT DISTINCT FROM 'submit_import';
    FOREACH v_privilege IN ARRAY string_to_array(replace(v_needs, ' ', ''), ',') LOOP
        IF v_any_column
           AND NOT coalesce(has_any_column_privilege(v_caller, p_target, v_privilege), false) THEN
            RAISE EXCEPTION 'permission denied: role % lacks % on % (on any of its columns)',
                            v_caller, v_privilege, p_target
                USING ERRCODE = '42501',
                      HINT = format('GRANT %s ON %s TO %I; or grant %s on the columns it may '
                                    'write, e.g. GRANT %s (col) ON %s TO %I;', v_privilege,
                                    p_target, v_caller, v_privilege, v_privilege, p_target,
                                    v_caller);
        ELSIF NOT v_any_column
              AND NOT (CASE WHEN upper(v_privilege) = 'SELECT'
                            THEN pgjobs._reads_every_column(v_caller, p_target)
                            ELSE coalesce(has_table_privilege(v_caller, p_target, v_privilege),
                                          false) END) THEN
            RAISE EXCEPTION 'permission denied: role % lacks % on %', v_caller, v_privilege,
                            p_target
                USING ERRCODE = '42501',
                      HINT = format('GRANT %s ON %s TO %I;', v_privilege, p_target, v_caller);
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs._require_entry(regclass, text, text[]) IS
'Internal: the first check of a client call on a target, before the registry is read: the '
'privileges the call needs (p_privilege, or the entry''s own, pgjobs._entry_privilege), 42501 '
'alike for a registered table and any other.';
