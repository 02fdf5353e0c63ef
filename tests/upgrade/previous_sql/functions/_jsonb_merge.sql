CREATE OR REPLACE FUNCTION pgjobs._jsonb_merge(p_base jsonb, p_patch jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Recursive merge: where both sides hold an object under a key, merge
-- them; otherwise the patch's value wins. Used for nested backfill fields.
DECLARE
    v_key text;
    v_value jsonb;
BEGIN
    IF jsonb_typeof(p_base) IS DISTINCT FROM 'object'
       OR jsonb_typeof(p_patch) IS DISTINCT FROM 'object' THEN
        RETURN p_patch;
    END IF;
    FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(p_patch) e LOOP
        p_base := p_base || jsonb_build_object(v_key,
                                               pgjobs._jsonb_merge(p_base -> v_key, v_value));
    END LOOP;
    RETURN p_base;
END
$$;
