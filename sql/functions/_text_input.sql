CREATE OR REPLACE FUNCTION pgjobs._text_input(p_expr text, p_type text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- SQL that reads the text expression p_expr as a value of the full type
-- p_type (format_type) the way a literal of it is read: through the type's
-- input. (<text>)::type is that for every type but regclass (and a domain
-- over it): text::regclass is a cast function of its own that reads a
-- name only, so a key given by its oid ('16384', which the input and the
-- stored canonical text, pgjobs._canonical_text, both read) was "not a
-- valid regclass" there and the same row by name was not. The one place
-- that decides it, for every dynamic cast of a list of texts to the key's
-- type (pgjobs._row_selection, pgjobs._require_known_keys). Locks nothing.
BEGIN
    IF pgjobs._base_type(p_type::regtype) = 'regclass'::regtype THEN
        RETURN format('(pg_catalog.regclassin((%s)::pg_catalog.cstring))::%s', p_expr, p_type);
    END IF;
    RETURN format('(%s)::%s', p_expr, p_type);
END
$$;
