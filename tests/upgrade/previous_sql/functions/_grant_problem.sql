CREATE OR REPLACE FUNCTION pgjobs._grant_problem(
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
-- What p_role, a role known to exist (its caller looked it up:
-- pgjobs._submitter_identity_problem), lacks of p_privilege on p_target, in
-- a form that does not raise: the first thing missing, as a message and
-- hint, or both NULL. The privilege half of pgjobs._role_problem (which
-- looks the role up first, then asks this), and what
-- pgjobs._submitter_problem asks once it has checked the submitter's
-- identity, so that neither looks the role up twice.
-- p_privilege: one privilege, or several separated by commas, each of
-- them required (the run-time check of a delete needs DELETE and SELECT:
-- one call and one row-security test per page, not two).
-- p_columns NULL: each privilege on the table (SELECT: on the table, or on
-- every one of its columns, pgjobs._reads_every_column); an array: p_privilege on each of
-- those columns (a table-level grant covers them all; column-level grants
-- must cover every one, and the first missing one is named); an empty
-- array: p_privilege on at least one column (what a caller needs before it
-- is known which columns a job writes). A missing privilege and a
-- row-level security policy that would confine the role
-- (pgjobs._row_security_rule) are problems. Locks nothing.
DECLARE
    v_col text;
    v_privilege text;
BEGIN
    FOREACH v_privilege IN ARRAY string_to_array(replace(p_privilege, ' ', ''), ',') LOOP
        IF p_columns IS NULL THEN
            -- SELECT on every column (column grants) reads the table as a
            -- table grant does (pgjobs._reads_every_column); one column
            -- missing, the same refusal as before.
            IF NOT (CASE WHEN upper(v_privilege) = 'SELECT'
                         THEN pgjobs._reads_every_column(p_role, p_target)
                         ELSE has_table_privilege(p_role, p_target, v_privilege) END) THEN
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
    IF pgjobs._row_security_rule(p_target, p_role) THEN
        message := format('permission denied: row-level security on %s applies to role %s, '
                          'and pgjobs cannot act under its policies', p_target, p_role);
        hint := 'Query the table directly (its policies apply), use a role with BYPASSRLS, '
                'or, if the policies need not bind pgjobs'' clients, an administrator may '
                'register the target with {"ignore_row_security": true}.';
    END IF;
END
$$;
