CREATE OR REPLACE FUNCTION pgjobs._btree_opclasses(p_base regtype)
RETURNS TABLE (opclass oid, family oid, intype oid)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The default btree operator classes that order values of p_base (a base
-- type: callers resolve domains first), as an index or ORDER BY on such a
-- column would pick them: the type's own, anyenum's for an enum, or that of
-- a type it is binary-coercible to (varchar uses text's), implicitly, as
-- PostgreSQL's IsBinaryCoercible requires: xml's cast to text is binary but
-- for assignment only, so no btree orders xml and no index of it can be
-- built (text's class made an xml scope pass, then ask for that index).
-- Empty when no
-- btree orders the type. One lookup for pgjobs._registration_problem's key
-- rule (some class) and scope rule (one with an equalimage support
-- function). Locks nothing.
SELECT oc.oid, oc.opcfamily, oc.opcintype
  FROM pg_catalog.pg_opclass oc
  JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'
 WHERE oc.opcdefault
   AND (oc.opcintype = p_base
        OR (oc.opcintype = 'anyenum'::regtype
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                         WHERE t.oid = p_base AND t.typtype = 'e'))
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast pc
                    WHERE pc.castsource = p_base
                      AND pc.casttarget = oc.opcintype
                      AND pc.castmethod = 'b'
                      AND pc.castcontext = 'i'));
$$;
