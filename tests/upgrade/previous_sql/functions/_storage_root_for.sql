CREATE OR REPLACE FUNCTION pgjobs._storage_root_for(p_uri text, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The trusted root of p_uri for a job of scope p_scope: of the allow-list
-- prefixes that admit it (pgjobs._storage_admitting, as for
-- pgjobs._storage_allowed_for), the longest
-- text an administrator wrote literally: a prefix without `{scope}`
-- itself, a per-tenant one only its text before the `{scope}` segment
-- (file:///data/t for file:///data/t/{scope}/in; file:// when `{scope}`
-- is the first segment), never the folder the scope names nor one below
-- it, which lie in the tenant's folder and may be the tenant's to write.
-- NULL when no prefix admits p_uri (not allowed). The worker asks it once
-- per attempt for a file:// URI: a symbolic link at or above the root is
-- followed, one below it (at the scope's folder, or a folder the client
-- or the job's target and scope name) is refused (poller/storage.py).
-- Locks nothing.
BEGIN
    RETURN (
        SELECT r.root
          FROM pgjobs._storage_admitting(p_uri, p_scope) a
         CROSS JOIN LATERAL (
               SELECT CASE WHEN strpos(a.prefix, '{scope}') = 0 THEN a.expanded
                           ELSE left(a.prefix, strpos(a.prefix || '/', '/{scope}/') - 1)
                      END) r(root)
         ORDER BY length(r.root) DESC
         LIMIT 1);
END
$function$;
