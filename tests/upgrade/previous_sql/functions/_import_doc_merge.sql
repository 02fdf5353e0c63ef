CREATE OR REPLACE FUNCTION pgjobs._import_doc_merge(p_base jsonb, p_patch jsonb,
                                                    p_path text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The document an import with on_duplicate "update" leaves in an existing
-- row: the record's document fields p_patch merged into the row's document
-- p_base (p_path: the place, NULL for the document itself), as
-- pgjobs._jsonb_merge merges, except where the row holds a string, number,
-- boolean or array at a place where the record's fields make an object
-- (the document itself, each parent of a dotted field "a.b", an object
-- value of a JSONL field): that value, which the record does not name,
-- would be replaced by an object. Raises 22023 there, a data exception, so
-- the record is rejected with its line (pgjobs.import_batch), the row left
-- as it was; the rule of backfill's set (pgjobs._set_guard) and MongoDB's
-- ("Cannot create field 'x' in element"). A missing place, JSON null or a
-- NULL document becomes the object. A value the record names that is no
-- object replaces what the row holds, as any given column does. The job's
-- option replace_non_objects merges with pgjobs._jsonb_merge instead
-- (pgjobs._import_insert_sql). Locks nothing.
DECLARE
    v_key text;
    v_value jsonb;
BEGIN
    IF jsonb_typeof(p_patch) IS DISTINCT FROM 'object' THEN
        RETURN p_patch;
    END IF;
    IF p_base IS NULL OR jsonb_typeof(p_base) = 'null' THEN
        RETURN p_patch;
    END IF;
    IF jsonb_typeof(p_base) <> 'object' THEN
        RAISE EXCEPTION 'the row''s document holds % % where the record''s fields merge in an '
                        'object: updating it would replace that value (pass the option '
                        '{"replace_non_objects": true} to replace it)',
                        CASE jsonb_typeof(p_base) WHEN 'array' THEN 'an array'
                                                  ELSE 'a ' || jsonb_typeof(p_base) END,
                        CASE WHEN p_path IS NULL THEN 'as the document itself'
                             ELSE format('at "%s"', p_path) END
            USING ERRCODE = '22023',
            HINT = 'Fix the row or the record; or import with {"replace_non_objects": true} '
                   'to replace such values with the record''s object.';
    END IF;
    FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(p_patch) e LOOP
        p_base := p_base || jsonb_build_object(v_key, pgjobs._import_doc_merge(
            p_base -> v_key, v_value,
            CASE WHEN p_path IS NULL THEN v_key ELSE p_path || '.' || v_key END));
    END LOOP;
    RETURN p_base;
END
$$;
