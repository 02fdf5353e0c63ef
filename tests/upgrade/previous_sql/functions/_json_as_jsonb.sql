CREATE OR REPLACE FUNCTION pgjobs._json_as_jsonb(p_value json)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
STRICT
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A json column's value as a filter compares it (pgjobs._compile_filter_field:
-- json has no equality nor ordering, so it compares as jsonb). json keeps
-- any text JSON's grammar allows, and jsonb refuses some of it: a \u0000
-- escape, a lone surrogate, a number past numeric's range. A plain cast
-- raised 22P05 / 22P02 / 22003 on such a row, for the job's pages and for
-- every read of its scope while the job was pending (pgjobs.visible,
-- visible_count, a client's query around pgjobs.mask), although the
-- submit had tried the clause on a NULL and passed it. Such a value comes
-- back as a JSON string of its text, never NULL: it is still there for
-- null and $exists, equals no object, array, number or boolean, and
-- $contains reads its text. NULL for NULL (STRICT). Called in the mask's
-- text, on a client's path: granted to pgjobs_client. PARALLEL UNSAFE (the
-- default) on purpose: its exception block starts a subtransaction, which
-- a parallel plan refuses, so a query holding it never plans one. Locks
-- nothing.
BEGIN
    RETURN p_value::jsonb;
EXCEPTION WHEN data_exception THEN
    RETURN to_jsonb(p_value::text);
END
$$;
