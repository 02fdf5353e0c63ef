CREATE OR REPLACE FUNCTION pgjobs._doctor_ownership()
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's engine.ownership check: the objects of schema pgjobs (its
-- tables, views, sequences, routines, types; not an extension's members)
-- owned by a role whose rights the schema's owner lacks. `pgjobs migrate`
-- replaces every routine and grants on every table, which only an owner
-- may: run as the schema's owner, it refuses up front naming them
-- (pgjobs.migrate.check_ownership, whose catalog reads, queries.FOREIGN_OWNED,
-- these are, judged for the schema's owner). Read-only.
DECLARE
    v_owner regrole;
    v_found text;
    v_fix text;
BEGIN
    check_name := 'engine.ownership';
    target := NULL;
    SELECT n.nspowner::regrole INTO v_owner FROM pg_namespace n WHERE n.nspname = 'pgjobs';
    SELECT string_agg(format('%s %s (owner %s)', lower(o.kind), o.name,
                             o.owner::regrole), ', ' ORDER BY o.rank, o.name),
           string_agg(format('ALTER %s %s OWNER TO %s;', o.kind, o.name, v_owner), ' '
                      ORDER BY o.rank, o.name)
      INTO v_found, v_fix
      FROM (SELECT 1 AS rank, CASE c.relkind WHEN 'v' THEN 'VIEW'
                                  WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                  WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE'
                                  ELSE 'TABLE' END AS kind,
                   c.oid::regclass::text AS name, c.relowner AS owner,
                   'pg_class'::regclass AS class, c.oid
              FROM pg_class c
             WHERE c.relnamespace = 'pgjobs'::regnamespace
               AND c.relkind = ANY ('{r,p,v,m,S,f,c}'::"char"[])
            UNION ALL
            SELECT 2, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                                     ELSE 'FUNCTION' END,
                   p.oid::regprocedure::text, p.proowner, 'pg_proc'::regclass, p.oid
              FROM pg_proc p
             WHERE p.pronamespace = 'pgjobs'::regnamespace
            UNION ALL
            SELECT 3, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                   t.oid::regtype::text, t.typowner, 'pg_type'::regclass, t.oid
              FROM pg_type t
             WHERE t.typnamespace = 'pgjobs'::regnamespace
               AND t.typtype = ANY ('{b,d,e,r}'::"char"[])
               AND NOT EXISTS (SELECT FROM pg_type a WHERE a.typarray = t.oid)) o
     WHERE NOT pg_has_role(v_owner, o.owner, 'USAGE')
       AND NOT EXISTS (SELECT FROM pg_depend d
                        WHERE d.classid = o.class AND d.objid = o.oid AND d.deptype = 'e');
    IF v_found IS NULL THEN
        status := 'ok';
        detail := format('every object of schema pgjobs is owned by its owner %s or a role '
                         'whose rights it has: pgjobs migrate as %s can replace them all',
                         v_owner, v_owner);
        fix := NULL;
    ELSE
        status := 'warn';
        detail := format('objects of schema pgjobs are owned by a role whose rights its owner '
                         '%s does not have: %s; pgjobs migrate as %s refuses (42501) until '
                         'they are given back', v_owner, v_found, v_owner);
        fix := 'as a superuser (or each object''s owner): ' || v_fix
               || '  -- (docs/operations.md, Privileges migrate needs)';
    END IF;
    RETURN NEXT;
END
$function$;
