CREATE OR REPLACE FUNCTION pgjobs._typed_literal(p_text text, p_type text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- A self-contained typed literal ('...'::type) for a value given as text,
-- in canonical form: the value is parsed now, in the caller's session
-- (its DateStyle, TimeZone and IntervalStyle: deliberately not pinned
-- here), and written back by pgjobs._canonical_text, which prints in fixed
-- settings (ISO 8601, UTC, exact floats) whatever the session's. So 'now'
-- or '01/02/2030' mean what the submitter meant, once, and the stored SQL
-- reads the same in the runner's session (pg_cron's, another client's) as
-- in the submitter's. Raises the cast's own error for a value that is not
-- of p_type. Locks nothing.
DECLARE
    v_canonical text;
BEGIN
    IF p_type IN ('json', 'jsonb') THEN
        -- Named with its schema: the text is read on clients' paths too
        -- (pgjobs.mask), and neither name is a keyword.
        RETURN format('%L::pg_catalog.%s', p_text, p_type);
    END IF;
    EXECUTE format('SELECT pgjobs._canonical_text(%L::%s)', p_text, p_type) INTO v_canonical;
    RETURN format('%L::%s', v_canonical, pgjobs._type_sql(p_type));  -- any path
END
$$;
