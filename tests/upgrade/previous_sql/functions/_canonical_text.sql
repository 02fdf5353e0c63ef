CREATE OR REPLACE FUNCTION pgjobs._canonical_text(p_value anyelement)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET TimeZone = 'UTC'
SET bytea_output = 'hex'
AS $$
-- The one text form of a value that pgjobs stores and compares: printed
-- through to_jsonb (ISO 8601 dates and times) with every setting that
-- changes a value's text pinned here (times in UTC, floats exact, ISO
-- dates, postgres intervals), so that one value prints the same in every
-- session and its text reads back as the same value in every session.
-- Values that compare equal but print differently are brought to one
-- form: numeric loses trailing zeros of its scale (1.0 = 1), -0 is 0,
-- intervals are justified ('24 hours' = '1 day'),
-- character(n) loses its padding (a = 'a   ' in character comparisons).
-- A domain's value is judged by its base type (pg_typeof names the domain),
-- so a domain over numeric, interval or character prints as its base does;
-- bytea prints in hex whatever the caller's bytea_output. An array, a
-- composite or an oidvector prints as its type's output ('{1,2}', '(1,x)',
-- '1 2'), not as the JSON to_jsonb makes of it. An oid-alias value
-- (regclass, regtype, ...) prints as its oid. money is not a
-- scope (its text depends on lc_monetary; register_target refuses it).
-- The caller parses the value in its own session (see pgjobs._typed_literal,
-- pgjobs._canonical_scope). Locks nothing.
DECLARE
    v_json jsonb := to_jsonb(p_value);
    v_text text := v_json #>> '{}';
    -- A domain's value is judged by its base type.
    v_type regtype := pgjobs._base_type(pg_typeof(p_value));
BEGIN
    -- An array, a composite or an oidvector: to_jsonb builds JSON ([1, 2],
    -- {"a": 1}), which does not read back as the value. Its type's own
    -- output, under the settings pinned here, does.
    IF jsonb_typeof(v_json) IN ('array', 'object')
       AND v_type NOT IN ('json'::regtype, 'jsonb'::regtype) THEN
        RETURN p_value::text;
    END IF;
    IF v_type = 'numeric'::regtype AND v_text NOT IN ('NaN', 'Infinity', '-Infinity') THEN
        RETURN trim_scale(v_text::numeric)::text;
    ELSIF v_type IN ('real'::regtype, 'double precision'::regtype) AND v_text = '-0' THEN
        RETURN '0';
    ELSIF v_type = 'interval'::regtype THEN
        RETURN justify_interval(v_text::interval)::text;  -- '24 hours' = '1 day'
    ELSIF v_type = 'character'::regtype THEN
        RETURN rtrim(v_text, ' ');
    ELSIF v_type::oid < 16384 AND jsonb_typeof(v_json) = 'string'
          AND pgjobs._oid_alias_type(v_type) THEN
        -- An oid-alias value (a regclass key, a filter value of one): its
        -- oid, which names it for good, not its name, which a rename gives
        -- to another object (an excluded key's row deleted, another kept).
        -- The types' input reads the number back as the same value.
        RETURN (p_value::oid)::text;
    END IF;
    RETURN v_text;
END
$$;
