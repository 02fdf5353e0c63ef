CREATE OR REPLACE FUNCTION pgjobs._literal_text(p_value anyelement)
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
-- The value's own text (its type's output, a domain's value as its base
-- type prints it) under settings pinned here: ISO dates, UTC, postgres
-- intervals, exact floats, hex bytea. So text a caller parsed in its own
-- session ('2024-01-01 00:00' in Asia/Tokyo, '01/02/2024' under a DMY
-- DateStyle, 'now') becomes the one value it meant, and reads back as that
-- value in any other session: a runner's, pg_cron's. Unlike
-- pgjobs._canonical_text it keeps the value as it is (1.50 stays 1.50,
-- '36 hours' stays 36 hours): it is for values written to a row (a
-- backfill's set, pgjobs._compile_set), not for comparing. An oid-alias
-- value (regclass, regtype, ..., pgjobs._oid_alias_type; through domains),
-- or an array of them, prints as its oid: its name is read again by each
-- page, and a rename between the submit and a page gave it to another
-- object (the job set that one's oid and succeeded). Locks nothing.
DECLARE
    v_type regtype := pgjobs._base_type(pg_typeof(p_value));
    v_elem regtype := (SELECT pgjobs._base_type(t.typelem::regtype) FROM pg_catalog.pg_type t
                        WHERE t.oid = v_type AND t.typelem <> 0
                          AND t.typsubscript = 'array_subscript_handler'::regproc);
    v_text text;
BEGIN
    IF pgjobs._oid_alias_type(v_type) THEN
        RETURN (p_value::oid)::text;
    ELSIF v_elem IS NOT NULL AND pgjobs._oid_alias_type(v_elem) THEN
        -- (EXECUTE, the type a value: the cast is one only an array of such a
        -- type has, which a check of the function for any type would refuse)
        EXECUTE format('SELECT ($1::%s)::pg_catalog.text', 'pg_catalog.oid[]'::regtype)
           INTO v_text USING p_value;
        RETURN v_text;
    END IF;
    RETURN p_value::text;
END
$$;
