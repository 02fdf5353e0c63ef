CREATE OR REPLACE FUNCTION pgjobs._foreign_comparisons(p_type regtype)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether values of p_type (a domain: its base type) compare through
-- operators defined outside pg_catalog, as an extension's types do (citext,
-- ltree, isn...). pgjobs builds its SQL under search_path pg_catalog, where
-- such operators are invisible: `=` would silently fall back to another
-- type's (citext compares as text) or not exist (ltree), while a client
-- that splices the mask resolves the type's own: the mask and the pages
-- would disagree. Such columns cannot be a target's key or scope, nor be
-- compared in a filter. Locks nothing.
WITH RECURSIVE base(oid, typtype, typbasetype) AS (
    SELECT t.oid, t.typtype, t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = p_type
    UNION ALL
    SELECT t.oid, t.typtype, t.typbasetype
      FROM pg_catalog.pg_type t JOIN base b ON t.oid = b.typbasetype
     WHERE b.typtype = 'd')
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_operator o, base b, pg_catalog.pg_type t
     WHERE b.typtype <> 'd'
       -- A built-in type compares with pg_catalog's operators whatever
       -- another schema adds for it (a shadowing `=` planted in public only
       -- fools sessions that put public first; never pgjobs).
       AND t.oid = b.oid AND t.typnamespace <> 'pg_catalog'::regnamespace
       AND o.oprname IN ('=', '<>', '<', '<=', '>', '>=')
       AND (o.oprleft = b.oid OR o.oprright = b.oid)
       AND o.oprnamespace <> 'pg_catalog'::regnamespace);
$$;
