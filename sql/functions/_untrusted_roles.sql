CREATE OR REPLACE FUNCTION pgjobs._untrusted_roles(p_target regclass,
                                                   p_as name DEFAULT current_user)
RETURNS TABLE (role_name text, reason text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Which roles could make their own code run while pgjobs, acting as p_as
-- (default current_user), reads or writes p_target's rows or evaluates its
-- types, and lack p_as's rights (pg_has_role(role, p_as, 'USAGE') is
-- false). Empty: the target is trusted (pgjobs._require_trusted).
-- PL/pgSQL cannot enter a security-restricted operation as VACUUM does, and
-- a SET ROLE to the owner could be undone by the owner's own code, so
-- pgjobs refuses such targets instead of running their code.
--
-- Covered, for the target and every partition of it:
-- * the table's owner (it may add triggers, rules, defaults, constraints,
--   policies, indexes at any time);
-- * roles holding TRIGGER on it (PUBLIC counts as untrusted);
-- * owners of the functions and operators (and the operators' functions)
--   that its triggers (and their WHEN), rules, defaults and generated
--   columns, CHECK constraints, index expressions and predicates, and
--   policies depend on (pg_depend);
-- * owners of every type its columns (or those objects) use, followed
--   through domains' base types, array elements, composite attributes and
--   range subtypes, and of the functions and operators those types and the
--   domains' CHECK constraints depend on.
-- Not covered: functions called from inside a trusted function's body
-- (their author chose them). Locks nothing.
WITH RECURSIVE
rels AS (
    SELECT p_target::oid AS relid
    UNION
    SELECT t.relid::oid FROM pg_catalog.pg_partition_tree(p_target) t
),
objs AS (  -- the objects holding the tables' code, and the tables themselves
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid AS classid, r.relid AS objid
      FROM rels r
    UNION
    SELECT d.classid, d.objid
      FROM pg_catalog.pg_depend d JOIN rels r ON d.refobjid = r.relid
     WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.deptype IN ('a', 'i', 'S')
       AND d.classid IN ('pg_catalog.pg_attrdef'::pg_catalog.regclass,
                         'pg_catalog.pg_constraint'::pg_catalog.regclass,
                         'pg_catalog.pg_trigger'::pg_catalog.regclass,
                         'pg_catalog.pg_policy'::pg_catalog.regclass,
                         'pg_catalog.pg_rewrite'::pg_catalog.regclass,
                         'pg_catalog.pg_class'::pg_catalog.regclass)
),
types AS (
    SELECT a.atttypid AS typid
      FROM pg_catalog.pg_attribute a JOIN rels r ON a.attrelid = r.relid
     WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION
    SELECT d.refobjid
      FROM pg_catalog.pg_depend d JOIN objs o ON d.classid = o.classid AND d.objid = o.objid
     WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
    UNION
    SELECT n.typid
      FROM types t
      JOIN pg_catalog.pg_type ty ON ty.oid = t.typid
      CROSS JOIN LATERAL (
          SELECT ty.typbasetype AS typid WHERE ty.typtype = 'd'
          UNION ALL
          SELECT ty.typelem WHERE ty.typelem <> 0
          UNION ALL
          SELECT a.atttypid FROM pg_catalog.pg_attribute a
           WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid AND a.attnum > 0
             AND NOT a.attisdropped
          UNION ALL
          SELECT rg.rngsubtype FROM pg_catalog.pg_range rg WHERE rg.rngtypid = ty.oid) n
),
code AS (  -- everything whose dependencies name functions or operators
    SELECT o.classid, o.objid FROM objs o
    UNION
    SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::oid, t.typid FROM types t
    UNION
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass::oid, c.oid
      FROM pg_catalog.pg_constraint c JOIN types t ON c.contypid = t.typid
),
refs AS (
    SELECT d.refclassid, d.refobjid
      FROM pg_catalog.pg_depend d JOIN code c ON d.classid = c.classid AND d.objid = c.objid
     WHERE d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                            'pg_catalog.pg_operator'::pg_catalog.regclass)
),
roles (role_oid, reason) AS (
    SELECT c.relowner, pg_catalog.format('owns table %s', c.oid::pg_catalog.regclass)
      FROM pg_catalog.pg_class c JOIN rels r ON c.oid = r.relid
    UNION ALL
    SELECT acl.grantee, pg_catalog.format('holds TRIGGER on %s', c.oid::pg_catalog.regclass)
      FROM pg_catalog.pg_class c JOIN rels r ON c.oid = r.relid
      CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) acl
     WHERE acl.privilege_type = 'TRIGGER'
    UNION ALL
    SELECT p.proowner, pg_catalog.format('owns function %s, used by %s',
                                          p.oid::pg_catalog.regprocedure, p_target)
      FROM refs f JOIN pg_catalog.pg_proc p ON p.oid = f.refobjid
     WHERE f.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION ALL
    SELECT x.owner, pg_catalog.format('owns %s, used by %s', x.what, p_target)
      FROM refs f JOIN pg_catalog.pg_operator op ON op.oid = f.refobjid
      CROSS JOIN LATERAL (
          SELECT op.oprowner AS owner,
                 pg_catalog.format('operator %s', op.oid::pg_catalog.regoperator) AS what
          UNION ALL
          SELECT p.proowner, pg_catalog.format('function %s', p.oid::pg_catalog.regprocedure)
            FROM pg_catalog.pg_proc p WHERE p.oid = op.oprcode) x
     WHERE f.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
    UNION ALL
    SELECT ty.typowner, pg_catalog.format('owns type %s, used by %s',
                                          ty.oid::pg_catalog.regtype, p_target)
      FROM types t JOIN pg_catalog.pg_type ty ON ty.oid = t.typid
)
SELECT DISTINCT ON (1)
       CASE WHEN r.role_oid = 0 THEN 'PUBLIC'
            ELSE (SELECT a.rolname::text FROM pg_catalog.pg_roles a WHERE a.oid = r.role_oid) END,
       r.reason
  FROM roles r
 WHERE r.role_oid = 0 OR NOT pg_catalog.pg_has_role(r.role_oid, p_as, 'USAGE')
 ORDER BY 1, 2;
$$;
