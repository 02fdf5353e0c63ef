CREATE OR REPLACE FUNCTION pgjobs._oid_alias_type(p_type regtype)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether p_type (a domain judged by its base type) is one of
-- PostgreSQL's oid-alias types (regclass, regtype, regproc, regrole, ...):
-- an oid whose text is a name looked up in the catalog, under the reading
-- session's search_path, at the moment of reading. A rename gives that
-- name to another object, so pgjobs never stores such a value by its name:
-- pgjobs._canonical_text prints its oid, and pgjobs._scope_type_inexact
-- refuses it as a scope. The one list. Locks nothing.
BEGIN
    RETURN pgjobs._base_type(p_type) IN (
        SELECT t.oid FROM pg_catalog.pg_type t
         WHERE t.typnamespace = 'pg_catalog'::regnamespace
           AND t.typname IN ('regclass', 'regcollation', 'regconfig', 'regdictionary',
                             'regnamespace', 'regoper', 'regoperator', 'regproc',
                             'regprocedure', 'regrole', 'regtype'));
END
$$;
