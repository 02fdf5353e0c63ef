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
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_type t, pg_catalog.pg_operator o
     WHERE t.oid = pgjobs._base_type(p_type)
       -- A built-in type compares with pg_catalog's operators whatever
       -- another schema adds for it (a shadowing `=` planted in public only
       -- fools sessions that put public first; never pgjobs).
       AND t.typnamespace <> 'pg_catalog'::regnamespace
       AND o.oprname IN ('=', '<>', '<', '<=', '>', '>=')
       AND (o.oprleft = t.oid OR o.oprright = t.oid)
       AND o.oprnamespace <> 'pg_catalog'::regnamespace);
$$;
