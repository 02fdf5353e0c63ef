CREATE OR REPLACE FUNCTION pgjobs._parquet_column(
    p_type oid,
    p_typmod integer,
    p_expr text,
    OUT arrow text,
    OUT wire text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one place that maps a PostgreSQL type to the Parquet (Arrow) type of
-- an exported column, and to the SQL expression over p_expr that sends its
-- value to the worker as a CSV field (pgjobs.export_chunk_sql, format
-- parquet: COPY's CSV is the cheapest form for the server to print and for
-- pyarrow to parse). Python reads `arrow` (pgjobs.export_parquet_columns) and never
-- decides a type itself. Domains resolve to their base type.
--   arrow  int16 int32 int64 float32 float64 bool string json date32
--          timestamp_utc (timestamptz) timestamp (without time zone) time64
--          uuid binary decimal128(p,s) decimal256(p,s), or list<T> of the
--          scalar ones among those;
--   wire   what travels: epoch microseconds for timestamps and times, days
--          since 1970-01-01 for dates, text for numeric (no float on the
--          way), 32 hex digits for uuid, hex for bytea, JSON text for
--          json/jsonb and for lists; other types print as text (arrow
--          string).
-- numeric without a declared precision has no fixed decimal type: it is
-- exported as its exact text (arrow string); declare numeric(p,s) for a
-- decimal column. Arrays of types outside the scalar ones above are lists
-- of their elements' text; an array of more than one dimension, or one
-- whose lower bound is not 1, is refused (pgjobs._parquet_refuse). Locks nothing.
DECLARE
    v_type oid := p_type;
    v_typmod integer := p_typmod;
    v_elem oid;
    v_inner record;
    v_precision integer;
    v_scale integer;
BEGIN
    -- Domains: the base type and its modifier.
    WHILE (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid = v_type) = 'd' LOOP
        SELECT t.typbasetype, t.typtypmod INTO v_type, v_typmod
          FROM pg_catalog.pg_type t WHERE t.oid = v_type;
    END LOOP;
    SELECT nullif(t.typelem, 0) INTO v_elem FROM pg_catalog.pg_type t
     WHERE t.oid = v_type AND t.typcategory = 'A';
    IF v_elem IS NOT NULL THEN
        v_inner := pgjobs._parquet_column(v_elem, v_typmod, 'x');
        -- A list travels as its JSON text (an array of numbers, booleans or,
        -- for every other element type, the elements' exact text). Floats
        -- travel as their text too: JSON has no NaN or infinity (to_json
        -- writes them as strings, which the worker's JSON reader refused in
        -- a list of numbers); the worker casts the texts to floats.
        IF v_inner.arrow IN ('float32', 'float64') THEN
            arrow := format('list<%s>', v_inner.arrow);
            wire := format('pg_catalog.to_json(%s::pg_catalog.text[])::pg_catalog.text', p_expr);
        ELSIF v_inner.arrow IN ('int16', 'int32', 'int64', 'bool') THEN
            arrow := format('list<%s>', v_inner.arrow);
            wire := format('pg_catalog.to_json(%s)::pg_catalog.text', p_expr);
        ELSE
            arrow := 'list<string>';
            wire := format('pg_catalog.to_json(%s::pg_catalog.text[])::pg_catalog.text', p_expr);
        END IF;
        -- A list holds one dimension: an array of more (to_json nests them)
        -- fails the export naming its column (pgjobs._parquet_refuse), not
        -- with pyarrow's "changed from number to array" and no column named.
        -- A list holds no lower bound either: an array that does not start
        -- at 1 ('[0:1]={a,b}') is refused alike, never written as if it did
        -- (the value read back would be another one). The jsonl export and
        -- pgjobs.visible write such a value as its PostgreSQL text
        -- (pgjobs._array_bounds_test); an element's own arrays travel in its
        -- text, bounds and all.
        wire := format('CASE WHEN pg_catalog.array_ndims(%1$s) OPERATOR(pg_catalog.>) 1 THEN '
                       'pgjobs._parquet_refuse(%2$L, ''a '' OPERATOR(pg_catalog.||) '
                       'pg_catalog.array_ndims(%1$s) OPERATOR(pg_catalog.||) '
                       '''-dimensional array'', %3$L) '
                       'WHEN pg_catalog.array_lower(%1$s, 1) OPERATOR(pg_catalog.<>) 1 THEN '
                       'pgjobs._parquet_refuse(%2$L, ''an array starting at index '' '
                       'OPERATOR(pg_catalog.||) pg_catalog.array_lower(%1$s, 1), %3$L) '
                       'ELSE %4$s END',
                       p_expr, p_expr, arrow, wire);
        RETURN;
    END IF;
    CASE v_type
        WHEN 'int2'::regtype THEN arrow := 'int16'; wire := p_expr;
        WHEN 'int4'::regtype THEN arrow := 'int32'; wire := p_expr;
        WHEN 'int8'::regtype THEN arrow := 'int64'; wire := p_expr;
        WHEN 'bool'::regtype THEN arrow := 'bool'; wire := p_expr;
        -- NaN and infinities included: the worker's CSV parser reads them.
        WHEN 'float4'::regtype THEN arrow := 'float32'; wire := p_expr;
        WHEN 'float8'::regtype THEN arrow := 'float64'; wire := p_expr;
        -- Parquet dates and timestamps hold no infinity: such a value fails
        -- the export naming its column (pgjobs._parquet_refuse), not with
        -- "cannot subtract infinite dates" or "cannot convert infinity to
        -- bigint" and no hint (hX pass).
        WHEN 'date'::regtype THEN
            arrow := 'date32';
            wire := format('CASE WHEN NOT pg_catalog.isfinite(%1$s) THEN '
                           'pgjobs._parquet_refuse(%2$L, %1$s::pg_catalog.text, %3$L)::pg_catalog.int4 '
                           'ELSE (%1$s OPERATOR(pg_catalog.-) ''1970-01-01''::pg_catalog.date) END',
                           p_expr, p_expr, arrow);
        WHEN 'timestamptz'::regtype THEN
            arrow := 'timestamp_utc';
            -- Past 2^63-1 microseconds since 1970 (294247-01-10 04:00:54.775807
            -- UTC; PostgreSQL's own timestamps reach 294276) it is refused
            -- alike, not left to "bigint out of range" with no column named.
            wire := format('CASE WHEN NOT pg_catalog.isfinite(%1$s::pg_catalog.timestamptz) '
                           'OR %1$s::pg_catalog.timestamptz OPERATOR(pg_catalog.>) '
                           '''294247-01-10 04:00:54.775807+00''::pg_catalog.timestamptz THEN '
                           'pgjobs._parquet_refuse(%2$L, %1$s::pg_catalog.text, %3$L)::pg_catalog.int8 '
                           'ELSE (pg_catalog.extract(''epoch'', %1$s::pg_catalog.timestamptz) '
                           'OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 END',
                           p_expr, p_expr, 'timestamp');
        WHEN 'timestamp'::regtype THEN
            arrow := 'timestamp';
            wire := format('CASE WHEN NOT pg_catalog.isfinite(%1$s::pg_catalog.timestamp) '
                           'OR %1$s::pg_catalog.timestamp OPERATOR(pg_catalog.>) '
                           '''294247-01-10 04:00:54.775807''::pg_catalog.timestamp THEN '
                           'pgjobs._parquet_refuse(%2$L, %1$s::pg_catalog.text, %3$L)::pg_catalog.int8 '
                           'ELSE (pg_catalog.extract(''epoch'', %1$s::pg_catalog.timestamp) '
                           'OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 END',
                           p_expr, p_expr, arrow);
        WHEN 'time'::regtype THEN
            arrow := 'time64';
            wire := format('(pg_catalog.extract(''epoch'', %s::time) '
                           'OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8', p_expr);
        WHEN 'uuid'::regtype THEN
            arrow := 'uuid'; wire := format('pg_catalog.replace(%s::pg_catalog.text, ''-'', '''')', p_expr);
        WHEN 'bytea'::regtype THEN
            arrow := 'binary'; wire := format('pg_catalog.encode(%s, ''hex'')', p_expr);
        -- char(n) keeps its padding, as COPY prints it (::text would trim it).
        WHEN 'bpchar'::regtype THEN arrow := 'string'; wire := p_expr;
        WHEN 'json'::regtype, 'jsonb'::regtype THEN
            arrow := 'json'; wire := format('%s::pg_catalog.text', p_expr);
        WHEN 'numeric'::regtype THEN
            IF v_typmod >= 4 THEN
                v_precision := ((v_typmod - 4) >> 16) & 65535;
                v_scale := (v_typmod - 4) & 65535;
                IF v_scale > 1023 THEN  -- a negative scale (PostgreSQL 15+)
                    v_scale := v_scale - 2048;
                END IF;
            END IF;
            IF v_precision IS NULL OR v_scale < 0 OR v_scale > v_precision
               OR v_precision > 76 THEN
                arrow := 'string';
            ELSE
                arrow := format('%s(%s,%s)',
                                CASE WHEN v_precision > 38 THEN 'decimal256' ELSE 'decimal128' END,
                                v_precision, v_scale);
            END IF;
            wire := format('%s::pg_catalog.text', p_expr);
            IF arrow <> 'string' THEN  -- a decimal holds no NaN
                wire := format('CASE WHEN %1$s OPERATOR(pg_catalog.=) ''NaN''::pg_catalog.numeric '
                               'THEN pgjobs._parquet_refuse(%2$L, ''NaN'', %3$L) ELSE %4$s END',
                               p_expr, p_expr, arrow, wire);
            END IF;
        ELSE
            arrow := 'string'; wire := format('%s::pg_catalog.text', p_expr);
    END CASE;
END
$$;
