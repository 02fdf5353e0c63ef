CREATE OR REPLACE FUNCTION pgjobs._cursor_stuck(
    p_target regclass,
    p_key_column name,
    p_key_type text,
    p_after text,
    p_upper text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one check that a keyset walk's cursor moves: whether p_upper, the
-- bound a walk found after cursor p_after (both the key's text, as
-- pgjobs._nth_key prints it; p_key_type the key column's type,
-- pgjobs._column_type), reads back as a key past p_after, under the key
-- column's own collation (as the walk orders, pgjobs._column_collate).
-- NULL when it does, or when either is NULL (a walk's first step, or its
-- last); else the problem, naming the key column and its type. A key whose
-- text does not read back as the same value (a setting the text depends on
-- left unpinned, a type whose output loses precision) prints a bound that
-- reads back as the cursor itself or below it: the walk's next step starts
-- there again, and repeats it, forever when the step reads no row. Asked
-- by a delete's or backfill's page (pgjobs._run_page: the job fails), the
-- typo guard's walk (pgjobs._unknown_fields_from) and a preview's count
-- (pgjobs._preview_count), which raise it. Locks nothing.
DECLARE
    v_advances boolean;
BEGIN
    IF p_upper IS NULL OR p_after IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %1$L::%2$s%4$s > %3$L::%2$s', p_upper, p_key_type, p_after,
                   pgjobs._column_collate(p_target, p_key_column))
       INTO v_advances;
    IF coalesce(v_advances, false) THEN
        RETURN NULL;
    END IF;
    RETURN format('the cursor does not advance: key column %I (%s) printed %L after %L; its '
                  'text does not read back as the same value', p_key_column, p_key_type,
                  p_upper, p_after);
END
$$;
