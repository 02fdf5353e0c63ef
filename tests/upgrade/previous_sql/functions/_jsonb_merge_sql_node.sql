CREATE OR REPLACE FUNCTION pgjobs._jsonb_merge_sql_node(p_base text, p_patch jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- One object of pgjobs._jsonb_merge_sql's patch (its sizes already
-- bounded): the fields whose values are no object in one `||` of a
-- literal, each object-valued field merged into the base's value of it.
DECLARE
    v_flat jsonb;
    v_pairs text[];
    v_merged text := p_base;
BEGIN
    SELECT jsonb_object_agg(e.key, e.value) FILTER (WHERE jsonb_typeof(e.value) <> 'object'),
           array_agg(format('%L, %s', e.key,
                            pgjobs._jsonb_merge_sql_node(
                                format('(%s OPERATOR(pg_catalog.->) %L)', p_base, e.key),
                                e.value))
                     ORDER BY e.key) FILTER (WHERE jsonb_typeof(e.value) = 'object')
      INTO v_flat, v_pairs
      FROM jsonb_each(p_patch) e;
    IF v_flat IS NOT NULL THEN
        v_merged := format('%s OPERATOR(pg_catalog.||) %L::jsonb', v_merged, v_flat::text);
    END IF;
    -- jsonb_build_object takes at most 100 arguments: 50 fields a call.
    v_merged := concat_ws(' OPERATOR(pg_catalog.||) ', v_merged,
                          pgjobs._jsonb_build_sql(v_pairs));
    RETURN format('CASE WHEN pg_catalog.jsonb_typeof(%1$s) OPERATOR(pg_catalog.=) ''object'' '
                  'THEN %2$s ELSE %3$L::jsonb END', p_base, v_merged, p_patch::text);
END
$$;
