CREATE OR REPLACE FUNCTION pgjobs._import_merge_sql(
    p_base text,
    p_record text,
    p_paths text[],
    p_refuse boolean,
    p_place text DEFAULT NULL,
    p_depth integer DEFAULT 1)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The SQL expression of an import's on_duplicate "update" for a row's
-- document: the record's document p_record (jsonb SQL text: EXCLUDED's)
-- merged into the row's p_base (jsonb SQL text), with the value of
-- pgjobs._import_doc_merge(p_base, p_record, p_place) (p_refuse; else of
-- pgjobs._jsonb_merge, the option replace_non_objects), written with the
-- native operators where the shapes allow and a call of that function
-- where they do not. p_paths are the import's dotted document fields (a,
-- b.c, b.d), whose parents (b) the record builds as objects
-- (pgjobs._import_document_expr); p_depth the level of p_base in them.
--
-- Each level: where the row's value is an object, the record's is an
-- object holding every parent the fields name at this level, and none of
-- the record's other values there is an object (a JSONL field may carry
-- one), the result is the row's value || the record's other values ||
-- each parent merged the same way a level down; anything else (a missing
-- or JSON null place, a string, number, boolean or array where the record
-- makes an object, a record an insert trigger changed) is the function's
-- call for that level alone, which raises for the record exactly as
-- before (its place named). So a record of fields "name", "address.city"
-- and "meta.score" costs no PL/pgSQL call on rows whose document holds
-- objects there: the function's recursion called itself per record and
-- per field (8.7 s for 100,000 such records, 3.7x a COPY and INSERT ...
-- ON CONFLICT DO UPDATE written for them). Fields nested deeper than 16
-- levels, or a text past about 1 MB: the call alone, as before.
DECLARE
    v_parents text[];
    v_pairs text[] := '{}'::text[];
    v_parent text;
    v_merged text;
    v_others text := p_record;
    v_call text := CASE WHEN p_refuse
                        THEN format('pgjobs._import_doc_merge(%s, %s, %L)', p_base, p_record,
                                    p_place)
                        ELSE format('pgjobs._jsonb_merge(%s, %s)', p_base, p_record) END;
    v_written text;
BEGIN
    -- Each parent's text holds its place's path about ten times (the
    -- row's value, the record's, the place named), each written out from
    -- the document down: a field nested hundreds of levels (a CSV header's
    -- "a.a.a...") would make the statement grow with the square of its
    -- depth, and fields under long names or very many parents one of
    -- hundreds of megabytes (20 fields of 16 levels of 8,000-character
    -- names, a 2.5 MB header: 180 MB, 16 s to write, where the record's
    -- document is written with each name once). Past 16 levels, or past
    -- about 1 MB of such text (estimated before it is written, measured
    -- after): the call instead.
    IF p_depth = 1 AND ((SELECT max(cardinality(string_to_array(p, '.')))
                           FROM unnest(p_paths) p) > 16
                        OR (SELECT sum(10 * (32 * d.depth + octet_length(d.place)) + 700)
                              FROM (SELECT DISTINCT k AS depth,
                                           array_to_string(s.segs[1 : k], '.') AS place
                                      FROM (SELECT string_to_array(p, '.') AS segs
                                              FROM unnest(p_paths) p) s,
                                           generate_series(1, cardinality(s.segs) - 1) k) d)
                           > 1048576) THEN
        RETURN v_call;
    END IF;
    -- In the order jsonb keeps an object's keys (shorter first, then byte
    -- by byte), the order the function merges them in: where two parents
    -- each hold a value the record would replace, the record is rejected
    -- naming the first of them, as before (by the text's order, "aa" came
    -- before "b" and the reason named another place).
    SELECT coalesce(array_agg(d.seg ORDER BY octet_length(d.seg), d.seg COLLATE "C"), '{}')
      INTO v_parents
      FROM (SELECT DISTINCT s.segs[p_depth] AS seg
              FROM (SELECT string_to_array(p, '.') AS segs FROM unnest(p_paths) p) s
             WHERE cardinality(s.segs) > p_depth) d;
    FOREACH v_parent IN ARRAY v_parents LOOP
        v_pairs := v_pairs || format('%L, %s', v_parent, pgjobs._import_merge_sql(
            format('(%s OPERATOR(pg_catalog.->) %L)', p_base, v_parent),
            format('(%s OPERATOR(pg_catalog.->) %L)', p_record, v_parent),
            ARRAY(SELECT p FROM unnest(p_paths) p
                   WHERE (string_to_array(p, '.'))[p_depth] = v_parent
                     AND cardinality(string_to_array(p, '.')) > p_depth),
            p_refuse, concat_ws('.', p_place, v_parent), p_depth + 1));
    END LOOP;
    IF cardinality(v_parents) > 0 THEN
        v_others := format('(%s OPERATOR(pg_catalog.-) %L::pg_catalog.text[])', p_record,
                           v_parents);
    END IF;
    v_merged := concat_ws(' OPERATOR(pg_catalog.||) ', p_base, v_others,
                          pgjobs._jsonb_build_sql(v_pairs));
    v_written := format(
        'CASE WHEN pg_catalog.jsonb_typeof(%1$s) OPERATOR(pg_catalog.=) ''object'' '
        'AND pg_catalog.jsonb_typeof(%2$s) OPERATOR(pg_catalog.=) ''object''%3$s '
        'AND NOT pg_catalog.jsonb_path_exists(%4$s, '
        '''$.* ? (@.type() == "object")''::pg_catalog.jsonpath) '
        'THEN %5$s ELSE %6$s END',
        p_base, p_record,
        CASE WHEN cardinality(v_parents) > 0
             THEN format(' AND %s OPERATOR(pg_catalog.?&) %L::pg_catalog.text[]',
                         p_record, v_parents) END,
        v_others, v_merged, v_call);
    RETURN CASE WHEN p_depth = 1 AND octet_length(v_written) > 1048576 THEN v_call
                ELSE v_written END;
END
$$;
