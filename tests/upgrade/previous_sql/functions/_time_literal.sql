CREATE OR REPLACE FUNCTION pgjobs._time_literal(p_at timestamptz, p_without_zone boolean,
                                                p_time_zone text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The instant p_at as a self-contained SQL literal for comparing with a
-- created_at column: '...Z'::pg_catalog.timestamptz, or, for a `timestamp`
-- (without time zone) column, the wall-clock time in p_time_zone
-- ('...'::pg_catalog.timestamp: named with its schema, as pgjobs._type_sql
-- writes types, since the text is read on clients' paths too).
-- ISO 8601, so no session's DateStyle or TimeZone can change its meaning.
-- Infinite values stay infinite. Locks nothing.
BEGIN
    IF NOT isfinite(p_at) THEN
        RETURN format('%L::%s', p_at::text,
                      CASE WHEN p_without_zone THEN 'pg_catalog.timestamp'
                           ELSE 'pg_catalog.timestamptz' END);
    END IF;
    IF p_without_zone THEN
        RETURN format('%L::pg_catalog.timestamp',
                      to_char(p_at AT TIME ZONE p_time_zone, 'YYYY-MM-DD"T"HH24:MI:SS.US'));
    END IF;
    RETURN format('%L::pg_catalog.timestamptz',
                  to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
END
$$;
