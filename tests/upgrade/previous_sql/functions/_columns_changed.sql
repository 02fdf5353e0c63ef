CREATE OR REPLACE FUNCTION pgjobs._columns_changed(
    p_target regclass,
    p_recorded jsonb,
    OUT message text,
    OUT errcode text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- message NULL when every column of p_recorded (pgjobs._target_columns at the job's
-- submit; NULL for jobs submitted before migration 0036) is still p_target's
-- column of that number, name, type, type modifier and collation (and each
-- recorded enum label still that value's label); else what
-- changed, for the job's error, and its SQLSTATE (42703 for a column
-- dropped or renamed, 42804 for one retyped: not retryable, every attempt
-- would find the same). A column added since is no change (nothing
-- the job compiled names it). A page, chunk or batch holds the table first
-- (pgjobs._hold_target), so what this reads stays so to its commit.
-- Locks nothing.
DECLARE
    v_now jsonb;
    v_was jsonb;
    v_is record;
BEGIN
    IF p_recorded IS NULL THEN
        RETURN;
    END IF;
    -- (The common case: pgjobs._columns_same, the test the read mask makes.)
    IF pgjobs._columns_same(p_target, p_recorded) THEN
        RETURN;
    END IF;
    v_now := pgjobs._target_columns(p_target);
    FOR v_was IN SELECT e.value FROM jsonb_array_elements(p_recorded) e LOOP
        CONTINUE WHEN v_now @> jsonb_build_array(v_was);
        SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation INTO v_is
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_target AND a.attnum = (v_was ->> 'n')::smallint
           AND NOT a.attisdropped;
        errcode := '42703';
        IF NOT FOUND THEN
            message := format('column %I of %s was dropped', v_was ->> 'name', p_target);
        ELSIF v_is.attname <> v_was ->> 'name' THEN
            message := format('column %I of %s was renamed to %I', v_was ->> 'name', p_target,
                              v_is.attname);
        ELSIF v_is.atttypid <> (v_was ->> 'type')::oid
              OR v_is.atttypmod <> (v_was ->> 'typmod')::integer THEN
            errcode := '42804';
            message := format('column %I of %s changed type from %s to %s', v_was ->> 'name',
                              p_target, format_type((v_was ->> 'type')::oid,
                                                    (v_was ->> 'typmod')::integer),
                              format_type(v_is.atttypid, v_is.atttypmod));
        ELSIF v_is.attcollation <> (v_was ->> 'collation')::oid THEN
            errcode := '42804';
            message := format('column %I of %s changed collation', v_was ->> 'name', p_target);
        ELSE
            errcode := '42804';
            message := format('a value of type %s of column %I of %s was renamed',
                              format_type(v_is.atttypid, NULL), v_was ->> 'name', p_target);
            SELECT format('value %L of type %s of column %I of %s was renamed to %L',
                          l.value, e.enumtypid::regtype, v_was ->> 'name', p_target,
                          e.enumlabel)
              INTO message
              FROM jsonb_each_text(v_was -> 'labels') l
              JOIN pg_catalog.pg_enum e ON e.oid = l.key::oid
             WHERE e.enumlabel <> l.value::name
             ORDER BY e.enumsortorder
             LIMIT 1;
            message := coalesce(message, format('a value of type %s of column %I of %s was '
                                                'renamed', format_type(v_is.atttypid, NULL),
                                                v_was ->> 'name', p_target));
        END IF;
        RETURN;
    END LOOP;
END
$$;
