CREATE OR REPLACE FUNCTION pgjobs._require_role(
    p_role name,
    p_target regclass,
    p_privilege text,
    p_columns text[])
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one privilege check of a role acting on p_target through pgjobs: at
-- submit (pgjobs._require, for the caller) and again when the worker or the
-- engine runs the job (pgjobs._require_submitter, for the role that
-- submitted it: a grant revoked meanwhile stops the job before it writes).
-- p_privilege: one privilege, or several separated by commas, each of
-- them required (the run-time check of a delete needs DELETE and SELECT:
-- one call, one role lookup and one row-security test per page, not two).
-- p_columns NULL: each privilege on the table; an array: p_privilege on each of
-- those columns (a table-level grant covers them all; column-level grants
-- must cover every one, and the first missing one is named); an empty
-- array: p_privilege on at least one column (what a caller needs before it
-- is known which columns a job writes). A role that no longer exists, a
-- missing privilege and a row-level security policy that would confine the
-- role (pgjobs._row_security_confines) raise 42501. Locks nothing.
DECLARE
    v_col text;
    v_privilege text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = p_role) THEN
        RAISE EXCEPTION 'permission denied: role % does not exist (any more)', p_role
            USING ERRCODE = '42501',
            HINT = 'Submit the job again as an existing role.';
    END IF;
    FOREACH v_privilege IN ARRAY string_to_array(replace(p_privilege, ' ', ''), ',') LOOP
        IF p_columns IS NULL THEN
            IF NOT has_table_privilege(p_role, p_target, v_privilege) THEN
                RAISE EXCEPTION 'permission denied: role % lacks % on %', p_role, v_privilege,
                                p_target
                    USING ERRCODE = '42501',
                    HINT = format('GRANT %s ON %s TO %I;', v_privilege, p_target, p_role);
            END IF;
        ELSIF cardinality(p_columns) = 0 THEN
            IF NOT has_any_column_privilege(p_role, p_target, v_privilege) THEN
                RAISE EXCEPTION 'permission denied: role % lacks % on % (on any of its columns)',
                                p_role, v_privilege, p_target
                    USING ERRCODE = '42501',
                    HINT = format('GRANT %s ON %s TO %I; or grant %s on the columns it may '
                                  'write, e.g. GRANT %s (col) ON %s TO %I;', v_privilege, p_target,
                                  p_role, v_privilege, v_privilege, p_target, p_role);
            END IF;
        ELSIF NOT has_table_privilege(p_role, p_target, v_privilege) THEN
            FOREACH v_col IN ARRAY p_columns LOOP
                IF NOT has_column_privilege(p_role, p_target, v_col, v_privilege) THEN
                    RAISE EXCEPTION 'permission denied: role % lacks % on column % of %', p_role,
                                    v_privilege, quote_ident(v_col), p_target
                        USING ERRCODE = '42501',
                        HINT = format('GRANT %s (%I) ON %s TO %I; or leave the column out.',
                                      v_privilege, v_col, p_target, p_role);
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    IF pgjobs._row_security_confines(p_target, p_role) THEN
        RAISE EXCEPTION 'permission denied: row-level security on % applies to role %, and '
                        'pgjobs cannot act under its policies', p_target, p_role
            USING ERRCODE = '42501',
            HINT = 'Query the table directly (its policies apply), use a role with BYPASSRLS, '
                   'or, if the policies need not bind pgjobs'' clients, an administrator may '
                   'register the target with {"ignore_row_security": true}.';
    END IF;
END
$$;
