CREATE OR REPLACE FUNCTION pgjobs._role_problem(
    p_role name,
    p_target regclass,
    p_privilege text,
    p_columns text[],
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
-- The one privilege check of a role acting on p_target through pgjobs, in
-- a form that does not raise: the first thing p_role lacks, as the message
-- and hint of the 42501 that pgjobs._require_role raises from it, or both
-- NULL when p_role may act. pgjobs._require_role (submit, read path, the
-- runner's pages) raises it; pgjobs._submitter_problem hands it on to the
-- claim (pgjobs._may_start_attempt), which fails a job on it without an
-- exception block, so a claim that passes opens no subtransaction.
-- p_privilege: one privilege, or several separated by commas, each of
-- them required (the run-time check of a delete needs DELETE and SELECT:
-- one call, one role lookup and one row-security test per page, not two).
-- p_columns NULL: each privilege on the table; an array: p_privilege on each of
-- those columns (a table-level grant covers them all; column-level grants
-- must cover every one, and the first missing one is named); an empty
-- array: p_privilege on at least one column (what a caller needs before it
-- is known which columns a job writes). A role that no longer exists, a
-- missing privilege and a row-level security policy that would confine the
-- role (pgjobs._row_security_confines) are problems. Locks nothing.
DECLARE
    v_col text;
    v_privilege text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = p_role) THEN
        message := format('permission denied: role %s does not exist (any more)', p_role);
        hint := 'Submit the job again as an existing role.';
        RETURN;
    END IF;
    FOREACH v_privilege IN ARRAY string_to_array(replace(p_privilege, ' ', ''), ',') LOOP
        IF p_columns IS NULL THEN
            IF NOT has_table_privilege(p_role, p_target, v_privilege) THEN
                message := format('permission denied: role %s lacks %s on %s', p_role,
                                  v_privilege, p_target);
                hint := format('GRANT %s ON %s TO %I;', v_privilege, p_target, p_role);
                RETURN;
            END IF;
        ELSIF cardinality(p_columns) = 0 THEN
            IF NOT has_any_column_privilege(p_role, p_target, v_privilege) THEN
                message := format('permission denied: role %s lacks %s on %s (on any of its '
                                  'columns)', p_role, v_privilege, p_target);
                hint := format('GRANT %s ON %s TO %I; or grant %s on the columns it may '
                               'write, e.g. GRANT %s (col) ON %s TO %I;', v_privilege, p_target,
                               p_role, v_privilege, v_privilege, p_target, p_role);
                RETURN;
            END IF;
        ELSIF NOT has_table_privilege(p_role, p_target, v_privilege) THEN
            FOREACH v_col IN ARRAY p_columns LOOP
                IF NOT has_column_privilege(p_role, p_target, v_col, v_privilege) THEN
                    message := format('permission denied: role %s lacks %s on column %s of %s',
                                      p_role, v_privilege, quote_ident(v_col), p_target);
                    hint := format('GRANT %s (%I) ON %s TO %I; or leave the column out.',
                                   v_privilege, v_col, p_target, p_role);
                    RETURN;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    IF pgjobs._row_security_confines(p_target, p_role) THEN
        message := format('permission denied: row-level security on %s applies to role %s, '
                          'and pgjobs cannot act under its policies', p_target, p_role);
        hint := 'Query the table directly (its policies apply), use a role with BYPASSRLS, '
                'or, if the policies need not bind pgjobs'' clients, an administrator may '
                'register the target with {"ignore_row_security": true}.';
    END IF;
END
$$;
