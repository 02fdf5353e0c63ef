CREATE OR REPLACE FUNCTION pgjobs._oid_alias_hint(p_type regtype, p_sqlstate text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The hint for a text that a value of p_type (a domain judged by its base
-- type) could not be read from, when p_type is an oid-alias type
-- (pgjobs._oid_alias_type: regclass, regtype, ...) and p_sqlstate is an
-- error of its input's catalog lookup (no such object 42P01 / 42704 /
-- 42883 / 3F000, an ambiguous one 42725, a bad name 42602 / 42601); NULL
-- otherwise. pgjobs reads such a name with its own pinned search_path
-- (pg_catalog, pg_temp), never the caller's: it cannot see the caller's
-- search_path from inside a function that pins its own, and a name read
-- by one path and stored is another object's under the next. So an
-- unqualified name of the caller's schema ('orders' for public.orders) is
-- refused, and the hint says to write it schema-qualified or as its oid.
-- The one wording, for every entry point that reads such a value: an
-- exclude key (pgjobs._row_selection), a filter value
-- (pgjobs._compile_filter_field), visible's cursor (pgjobs._visible_as), a
-- backfill's set (pgjobs._compile_set), an import's value (pgjobs._import_input).
-- An array is judged by its element type (a backfill's set or an
-- import's value of a regclass[] column). Locks nothing.
DECLARE
    v_base regtype := pgjobs._base_type(p_type);
BEGIN
    v_base := coalesce((SELECT pgjobs._base_type(t.typelem::regtype) FROM pg_catalog.pg_type t
                         WHERE t.oid = v_base AND t.typelem <> 0
                           AND t.typsubscript = 'array_subscript_handler'::regproc), v_base);
    IF p_sqlstate IS NULL
       OR p_sqlstate NOT IN ('42P01', '42704', '42883', '3F000', '42725', '42602', '42601')
       OR NOT pgjobs._oid_alias_type(v_base) THEN
        RETURN NULL;
    END IF;
    IF v_base IN ('regrole'::regtype, 'regnamespace'::regtype) THEN
        RETURN format('A %s is the name of an existing %s (not schema-qualified) or its oid '
                      '(e.g. ''name''::%1$s::oid).', format_type(v_base, NULL),
                      CASE WHEN v_base = 'regrole'::regtype THEN 'role' ELSE 'schema' END);
    END IF;
    RETURN format('pgjobs reads a %s with its own search_path (pg_catalog, pg_temp), not '
                  'yours: write the name schema-qualified (e.g. ''public.orders'') or give its '
                  'oid (e.g. ''public.orders''::%1$s::oid).', format_type(v_base, NULL));
END
$$;
