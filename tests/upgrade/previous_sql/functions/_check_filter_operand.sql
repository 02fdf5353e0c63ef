CREATE OR REPLACE FUNCTION pgjobs._check_filter_operand(p_field text, p_op text, p_value jsonb)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The shape of a field operator's operand, which is the same whether the
-- field is a column or a document path: $in and $nin take an array of at
-- most 10000 values, ranges one string, number or boolean, $contains a
-- string, $exists true or false. pgjobs._compile_filter_field checks it
-- once, before pgjobs._compile_filter_column_op or
-- pgjobs._compile_filter_document_op translates the operator; what a value
-- must be for a column's type stays the column compiler's check. Raises
-- 22023 naming the operator and the field. Locks nothing.
BEGIN
    IF p_op IN ('$in', '$nin') THEN
        IF jsonb_typeof(p_value) <> 'array' THEN
            RAISE EXCEPTION 'operator "%" at "%" needs an array, got %',
                            p_op, p_field, left(p_value::text, 200)
                USING ERRCODE = '22023', HINT = format('e.g. {"%s": {"%s": [1, 2, 3]}}', p_field, p_op);
        END IF;
        IF jsonb_array_length(p_value) > 10000 THEN
            RAISE EXCEPTION 'operator "%" at "%" has % values (the limit is 10000)',
                            p_op, p_field, jsonb_array_length(p_value)
                USING ERRCODE = '22023', HINT = 'Split the work into several jobs.';
        END IF;

    ELSIF p_op IN ('$gt', '$gte', '$lt', '$lte') THEN
        IF jsonb_typeof(p_value) NOT IN ('string', 'number', 'boolean') THEN
            RAISE EXCEPTION 'operator "%" at "%" needs a string, number or boolean, got %',
                            p_op, p_field, left(p_value::text, 200)
                USING ERRCODE = '22023',
                  HINT = 'Range operators take one string, number or boolean, e.g. {"amount": {"$gt": 10}}.';
        END IF;

    ELSIF p_op = '$contains' THEN
        IF jsonb_typeof(p_value) <> 'string' THEN
            RAISE EXCEPTION 'operator "$contains" at "%" needs a string, got %',
                            p_field, left(p_value::text, 200)
                USING ERRCODE = '22023',
                  HINT = 'For example {"name": {"$contains": "smith"}}.';
        END IF;

    ELSIF p_op = '$exists' THEN
        IF jsonb_typeof(p_value) <> 'boolean' THEN
            RAISE EXCEPTION 'operator "$exists" at "%" needs true or false, got %',
                            p_field, left(p_value::text, 200)
                USING ERRCODE = '22023',
                  HINT = 'For example {"email": {"$exists": true}}.';
        END IF;
    END IF;
END
$function$;
