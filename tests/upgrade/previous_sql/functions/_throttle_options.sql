CREATE OR REPLACE FUNCTION pgjobs._throttle_options(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Validates the throttling options (pgjobs._throttle_keys) present in
-- p_options, a JSON object, and returns p_options with the throttling
-- defaults an administrator stored (pgjobs.set_defaults) filled in for the
-- keys it does not give: a writing job's options then show the limits it
-- runs with (built-in defaults, which nobody stored, apply at run time).
-- Integer options are stored in integer form. Other keys pass through
-- unchecked (the caller checks them). Raises 22023
-- naming the option, with its valid form. Locks nothing.
--   max_rows_per_second   integer 0 .. 1e9 (0: no limit)
--   page_delay            interval string, 0 .. 1 hour, between pages
--   max_replica_lag_bytes integer 0 .. 2^50 (0: no limit; default 256 MB)
--   max_wal_rate          integer bytes/s 0 .. 2^50 (0: no limit; default)
--   pause_on_autovacuum   boolean (default true)
--   max_xact_age          interval string, 0 .. 1 day (0: no limit; default):
--                         hold pages while a transaction older than this runs
DECLARE
    v_key text;
    v_value jsonb;
    v_interval interval;
    v_max interval;
    v_top numeric;
    v_stored jsonb;
BEGIN
    FOR v_key, v_value IN
        SELECT o.key, o.value FROM jsonb_each(p_options) o
         WHERE o.key = ANY (pgjobs._throttle_keys())
    LOOP
        CASE v_key
        WHEN 'pause_on_autovacuum' THEN
            IF jsonb_typeof(v_value) <> 'boolean' THEN
                RAISE EXCEPTION 'option "pause_on_autovacuum" must be true or false, not %', v_value
                    USING ERRCODE = '22023',
                    HINT = 'true (the default) holds pages while autovacuum works on the target.';
            END IF;
        WHEN 'page_delay', 'max_xact_age' THEN
            v_max := CASE v_key WHEN 'page_delay' THEN interval '1 hour' ELSE interval '1 day' END;
            BEGIN
                v_interval := (v_value #>> '{}')::interval;
            EXCEPTION WHEN OTHERS THEN
                v_interval := NULL;
            END;
            IF jsonb_typeof(v_value) <> 'string' OR v_interval IS NULL
               OR v_interval < interval '0' OR v_interval > v_max
               OR NOT pgjobs._interval_fixed(v_interval) THEN
                RAISE EXCEPTION 'option "%" must be an interval from 0 to %, not %',
                    v_key, v_max, v_value
                    USING ERRCODE = '22023',
                    HINT = format('For example {"%s": "%s"}; "0" turns it off. In days, hours, '
                                  'minutes and seconds, no months or years (their length '
                                  'depends on the date).', v_key,
                                  CASE v_key WHEN 'page_delay' THEN '200 ms' ELSE '10 min' END);
            END IF;
        ELSE
            v_top := CASE v_key WHEN 'max_rows_per_second' THEN 1000000000
                                ELSE 1125899906842624 END;
            IF jsonb_typeof(v_value) IS DISTINCT FROM 'number'
               OR (v_value::text)::numeric <> trunc((v_value::text)::numeric)
               OR (v_value::text)::numeric NOT BETWEEN 0 AND v_top THEN
                RAISE EXCEPTION 'option "%" must be an integer from 0 to %, not %', v_key,
                    v_top, v_value
                    USING ERRCODE = '22023',
                    HINT = format('For example {"%s": %s}; 0 turns it off.', v_key,
                                  CASE v_key WHEN 'max_rows_per_second' THEN '5000'
                                             WHEN 'max_wal_rate' THEN '67108864'
                                             ELSE '268435456' END);
            END IF;
            -- Stored as an integer (1e3 and 1000.0 read as 1000).
            p_options := jsonb_set(p_options, ARRAY[v_key],
                                   to_jsonb((v_value::text)::numeric::bigint));
        END CASE;
    END LOOP;
    SELECT jsonb_object_agg(d.key, d.value) INTO v_stored
      FROM pgjobs.settings s, jsonb_each(s.value) d
     WHERE s.key = 'defaults' AND d.key = ANY (pgjobs._throttle_keys())
       AND jsonb_typeof(d.value) <> 'null';
    RETURN coalesce(v_stored, '{}'::jsonb) || p_options;
END
$$;
