CREATE OR REPLACE FUNCTION pgjobs._check_kinds(p_kinds text[], p_example text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The kinds a claim asks for (pgjobs.claim, pgjobs.claim_items): at least
-- one, each a kind a submit accepts (lower-case letters, digits and
-- underscores, starting with a letter: pgjobs.submit's rule). A NULL, an
-- empty string or 'Export' can name no job, so a worker asking for it
-- waited for good on a claim that always came back empty. Raises 22023
-- naming the bad entry, with p_example in the hint. Locks nothing.
DECLARE
    v_kind text;
BEGIN
    IF p_kinds IS NULL OR cardinality(p_kinds) = 0 THEN
        RAISE EXCEPTION 'kinds must list at least one job kind' USING ERRCODE = '22023',
            HINT = format('For example ARRAY[%L].', p_example);
    END IF;
    -- One match over the list (NULL printed as '*', which no kind is): a
    -- claim pays for it on every poll. The loop only names the bad entry.
    IF array_to_string(p_kinds, ',', '*')
       ~ '^[a-z][a-z0-9_]{0,62}(,[a-z][a-z0-9_]{0,62})*$' THEN
        RETURN;
    END IF;
    FOREACH v_kind IN ARRAY p_kinds LOOP
        IF v_kind IS NULL OR v_kind !~ '^[a-z][a-z0-9_]{0,62}$' THEN
            RAISE EXCEPTION 'kinds holds %, which is no job kind',
                coalesce(quote_literal(v_kind), 'NULL')
                USING ERRCODE = '22023',
                HINT = format('A kind is lower-case letters, digits and underscores, starting '
                              'with a letter, as it was submitted; for example ARRAY[%L].',
                              p_example);
        END IF;
    END LOOP;
END
$$;
