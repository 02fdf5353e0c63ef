CREATE OR REPLACE FUNCTION pgjobs._reach_roles(p_target regclass,
                                               p_as name DEFAULT current_user)
RETURNS TABLE (role_oid oid, role_name text, reason text, lacks_rights boolean)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
-- The walk of the trust check: every role that could make its own code run
-- while pgjobs, acting as p_as (default current_user), reads or writes
-- p_target's rows or evaluates its types, one row a role (role_oid 0 and
-- role_name 'PUBLIC': PUBLIC) with its first reason, in the order they are
-- reported (name, then reason; WITH ORDINALITY keeps it), and whether it
-- lacks p_as's rights (lacks_rights: PUBLIC always, any other role when
-- pg_has_role(role, p_as, 'USAGE') is false; NULL when p_as is NULL). The
-- one walk and the one rule behind every trust verdict:
-- pgjobs._untrusted_roles (the roles that lack the rights, what doctor and
-- operators read), pgjobs._trust_verdict (the trust check, and for a
-- delete or backfill page's full check the reach's roles its verdict keeps
-- and its next pages ask again: pgjobs._verdict_roles_hold, as role
-- commands fire no event trigger for the DDL fence), and the scope checks
-- that cast only for a trusted target. The hot callers call this directly,
-- not through pgjobs._untrusted_roles: one set-returning call under
-- another was measured 1.16x a trust check.
-- PL/pgSQL cannot enter a security-restricted operation as VACUUM does, and
-- a SET ROLE to the owner could be undone by the owner's own code, so
-- pgjobs refuses such targets instead of running their code.
--
-- Covered, for the target and every partition or inheritance child of it,
-- every table or view its rules' actions (or a view's query) or its
-- policies' subqueries name, and
-- every table whose foreign key references it with an ON DELETE or ON
-- UPDATE action, at any depth (and, for the partition keys, every
-- partitioned table the target is a partition of):
-- * the table's owner (it may add triggers, rules, defaults, constraints,
--   policies, indexes at any time);
-- * roles holding TRIGGER on it (PUBLIC counts as untrusted);
-- * roles holding REFERENCES on it or on any of its columns (PUBLIC too):
--   such a role may at any time create a table of its own whose foreign
--   key references it ON DELETE or ON UPDATE CASCADE (which this check
--   would then follow), between two checks or while a page waits for its
--   lock after the check, and its AFTER triggers there ran as pgjobs on
--   the next pages;
-- * owners of the functions and operators (and the operators' functions)
--   that its triggers (and their WHEN), rules, defaults and generated
--   columns, CHECK constraints, index expressions and predicates,
--   policies and partition key expressions depend on (pg_depend);
-- * owners of every type its columns (or those objects) use, followed
--   through domains' base types, array elements, composite attributes,
--   range subtypes and a multirange's range type, and of the functions and
--   operators those types and the domains' CHECK constraints depend on.
-- Not covered: functions called from inside a trusted function's body
-- (their author chose them). Built-in objects (OID below 16384) belong to
-- the bootstrap superuser and are not followed. Every step is an index
-- lookup on a few OIDs: it runs on every call of a client function and
-- every page. jit off: the catalogs are tiny, compiling costs seconds.
-- Generic plans (plan_cache_mode): PL/pgSQL otherwise re-planned every
-- statement on every call (a custom plan for an array of a few OIDs looks
-- cheaper than the generic one, which is the same index scans), and
-- planning was nearly all of the check's time: 1.2-6.7 ms a call against
-- 0.5 ms (docs/engine.md, stop 45). What it reads is read on every call.
-- Locks nothing.
DECLARE
    v_rels oid[];
    v_classes oid[];
    v_objs oid[];
    v_types oid[];
    v_new oid[];
BEGIN
    -- The target and every table its statements reach without ONLY:
    -- partitions and inheritance children, at any depth.
    -- And every table a statement on them writes or reads besides, at any
    -- depth: the tables and views their rules name (a DO ALSO or DO
    -- INSTEAD action, a view's query), whose triggers, rules and policies
    -- (a view's functions) run as pgjobs too, and the tables and views their
    -- policies' subqueries read (a view's functions, and that table's own
    -- policies, run as the role the policy confines); and the tables whose foreign
    -- keys reference them with an action (ON DELETE or ON UPDATE CASCADE,
    -- SET NULL, SET DEFAULT): PostgreSQL runs the action as that table's
    -- owner but its AFTER triggers later, as pgjobs.
    WITH RECURSIVE tree (relid) AS (
        SELECT p_target::oid
        UNION
        SELECT n.relid
          FROM tree t
          CROSS JOIN LATERAL (
              SELECT i.inhrelid AS relid FROM pg_inherits i WHERE i.inhparent = t.relid
              UNION ALL
              SELECT d.refobjid
                FROM pg_rewrite rw
                JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                                AND d.refclassid = 'pg_class'::regclass
                JOIN pg_class c ON c.oid = d.refobjid AND c.relkind IN ('r', 'p', 'v', 'f')
               WHERE rw.ev_class = t.relid AND d.refobjid <> t.relid
              UNION ALL
              SELECT d.refobjid
                FROM pg_policy pol
                JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = pol.oid
                                AND d.refclassid = 'pg_class'::regclass
                JOIN pg_class c ON c.oid = d.refobjid AND c.relkind IN ('r', 'p', 'v', 'f')
               WHERE pol.polrelid = t.relid AND d.refobjid <> t.relid
              UNION ALL
              SELECT con.conrelid
                FROM pg_depend d
                JOIN pg_constraint con ON con.oid = d.objid
               WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid
                 AND d.classid = 'pg_constraint'::regclass
                 AND con.contype = 'f' AND con.confrelid = t.relid
                 AND (con.confdeltype IN ('c', 'n', 'd')
                      OR con.confupdtype IN ('c', 'n', 'd'))) n)
    SELECT array_agg(t.relid) INTO v_rels FROM tree t;
    -- The objects that hold the tables' code: defaults and generated
    -- columns, constraints, triggers, policies, rules, indexes; and the
    -- tables themselves, and the partitioned tables the target is a
    -- partition of (at any level), whose own dependencies are their
    -- partition keys' expressions: a row written into a partition is
    -- routed by, or checked against (its partition constraint), every
    -- ancestor's key, so registering a partition runs its ancestors' key
    -- functions as pgjobs. (pg_partition_ancestors lists the target too.)
    SELECT array_agg(x.classid), array_agg(x.objid) INTO v_classes, v_objs
      FROM (SELECT d.classid, d.objid
              FROM pg_depend d
             WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (v_rels)
               AND d.deptype IN ('a', 'i', 'S')
               AND d.classid IN ('pg_attrdef'::regclass, 'pg_constraint'::regclass,
                                 'pg_trigger'::regclass, 'pg_policy'::regclass,
                                 'pg_rewrite'::regclass, 'pg_class'::regclass)
            UNION
            SELECT 'pg_class'::regclass::oid, r.relid
              FROM unnest(v_rels) r (relid)
            UNION
            SELECT 'pg_class'::regclass::oid, a.relid::oid
              FROM pg_partition_ancestors(p_target) a) x;
    v_classes := coalesce(v_classes, '{}');
    v_objs := coalesce(v_objs, '{}');
    -- The types of the columns and of those objects, then what they are
    -- made of (domain bases, array elements, composite attributes, range
    -- subtypes, a multirange's range type), until nothing new turns up.
    SELECT array_agg(DISTINCT x.typid) INTO v_new
      FROM (SELECT a.atttypid AS typid FROM pg_attribute a
             WHERE a.attrelid = ANY (v_rels) AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT d.refobjid FROM unnest(v_classes, v_objs) o (classid, objid)
              JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid
             WHERE d.refclassid = 'pg_type'::regclass
               -- A typed table's composite type (CREATE TABLE ... OF) holds
               -- no code of the table's: its owner cannot alter the table,
               -- and its attributes' types are the columns' (above).
               AND NOT (o.classid = 'pg_class'::regclass AND d.objsubid = 0
                        AND d.refobjid = (SELECT c.reloftype FROM pg_class c
                                           WHERE c.oid = o.objid))) x
     WHERE x.typid >= 16384;
    v_types := '{}';
    WHILE cardinality(v_new) > 0 LOOP
        v_types := v_types || v_new;
        SELECT array_agg(DISTINCT n.typid) INTO v_new
          FROM pg_type ty
          CROSS JOIN LATERAL (
              SELECT ty.typbasetype AS typid WHERE ty.typtype = 'd'
              UNION ALL
              SELECT ty.typelem WHERE ty.typelem <> 0
              UNION ALL
              SELECT a.atttypid FROM pg_attribute a
               WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid AND a.attnum > 0
                 AND NOT a.attisdropped
              UNION ALL
              SELECT rg.rngsubtype FROM pg_range rg WHERE rg.rngtypid = ty.oid
              UNION ALL
              -- A multirange's ranges are read with its range type's input
              -- (so its subtype's, and a domain's CHECK there).
              SELECT rg.rngtypid FROM pg_range rg WHERE rg.rngmultitypid = ty.oid) n
         WHERE ty.oid = ANY (v_new) AND n.typid >= 16384 AND NOT n.typid = ANY (v_types);
    END LOOP;
    -- Their code: the types' own dependencies and their (domain) constraints.
    SELECT v_classes || array_agg(x.classid), v_objs || array_agg(x.objid)
      INTO v_classes, v_objs
      FROM (SELECT 'pg_type'::regclass::oid AS classid, t.typid AS objid
              FROM unnest(v_types) t (typid)
            UNION ALL
            SELECT 'pg_constraint'::regclass::oid, c.oid
              FROM pg_constraint c WHERE c.contypid = ANY (v_types)) x;

    RETURN QUERY
    WITH refs AS (
        SELECT d.refclassid, d.refobjid
          FROM unnest(v_classes, v_objs) o (classid, objid)
          JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid
         WHERE d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass)
    ),
    roles (role_oid, why) AS (
        SELECT c.relowner, format('owns table %s', c.oid::regclass)
          FROM pg_class c WHERE c.oid = ANY (v_rels)
        UNION ALL
        SELECT acl.grantee, format('holds %s on %s', acl.privilege_type, c.oid::regclass)
          FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) acl
         WHERE c.oid = ANY (v_rels) AND acl.privilege_type IN ('TRIGGER', 'REFERENCES')
        UNION ALL
        SELECT acl.grantee, format('holds REFERENCES on column %I of %s', a.attname,
                                   a.attrelid::regclass)
          FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) acl
         WHERE a.attrelid = ANY (v_rels) AND a.attacl IS NOT NULL
           AND acl.privilege_type = 'REFERENCES'
        UNION ALL
        SELECT p.proowner, format('owns function %s, used by %s', p.oid::regprocedure, p_target)
          FROM refs f JOIN pg_proc p ON p.oid = f.refobjid
         WHERE f.refclassid = 'pg_proc'::regclass
        UNION ALL
        SELECT x.owner, format('owns %s, used by %s', x.what, p_target)
          FROM refs f JOIN pg_operator op ON op.oid = f.refobjid
          CROSS JOIN LATERAL (
              SELECT op.oprowner AS owner, format('operator %s', op.oid::regoperator) AS what
              UNION ALL
              SELECT p.proowner, format('function %s', p.oid::regprocedure)
                FROM pg_proc p WHERE p.oid = op.oprcode) x
         WHERE f.refclassid = 'pg_operator'::regclass
        UNION ALL
        SELECT ty.typowner, format('owns type %s, used by %s', ty.oid::regtype, p_target)
          FROM pg_type ty WHERE ty.oid = ANY (v_types)
    ),
    -- One row a role, its first reason: code it has (a table, a function)
    -- before a REFERENCES it could add some with. Rows come in the order
    -- every caller reports them in: by name, then that reason.
    first (role_oid, why) AS (
        SELECT DISTINCT ON (r.role_oid) r.role_oid, r.why
          FROM roles r
         ORDER BY r.role_oid, r.why LIKE 'holds REFERENCES %', r.why
    )
    SELECT f.role_oid,
           CASE WHEN f.role_oid = 0 THEN 'PUBLIC'
                ELSE (SELECT a.rolname::text FROM pg_roles a WHERE a.oid = f.role_oid) END,
           f.why,
           -- The rule: PUBLIC never has p_as's rights; another role has them
           -- when it inherits p_as's privileges (a member of it, USAGE).
           f.role_oid = 0 OR NOT pg_has_role(f.role_oid, p_as, 'USAGE')
      FROM first f
     ORDER BY 2, f.why LIKE 'holds REFERENCES %', f.why;
END
$$;
