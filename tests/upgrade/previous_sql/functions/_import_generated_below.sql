CREATE OR REPLACE FUNCTION pgjobs._import_generated_below(
    p_target regclass,
    p_column text,
    p_what text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Raises 22023 when a table under p_target (a partition at any level, an
-- inheritance child) generates column p_column while p_target does not:
-- PostgreSQL 15 computes the child's own value whatever the INSERT into
-- p_target gave, so an import writing that column (the scope, a key, any
-- column the source names) would store the child's value in place of the
-- record's without a word; later releases refuse that shape. p_what names
-- what the import writes there, for the message ('the job''s scope', 'the
-- source''s values'). The nearest such table first, then by name: one
-- answer. The hint is the fix PostgreSQL accepts: a child's inherited
-- column cannot DROP EXPRESSION ("cannot drop generation expression from
-- inherited column"), so it is detached (or leaves the inheritance) first
-- and attached again after, with its bound. Called by
-- pgjobs._import_scope_writable (the scope column, at submit and at each
-- attempt's start) and pgjobs._import_insert_sql (each column a batch
-- maps). Locks nothing.
DECLARE
    v_child record;
BEGIN
    -- (Most targets have no table under them: one index probe, called at
    -- each batch and for each column a statement maps.)
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhparent = p_target) THEN
        RETURN;
    END IF;
    WITH RECURSIVE tree(rel, parent, depth) AS (
        SELECT p_target::oid, NULL::oid, 0
        UNION
        SELECT i.inhrelid, i.inhparent, tree.depth + 1
          FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.rel)
    SELECT c.oid::regclass AS rel, u.parent::regclass AS parent, c.relispartition,
           pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound,
           a.attname, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expr
      INTO v_child
      FROM tree u
      JOIN pg_catalog.pg_class c ON c.oid = u.rel
      JOIN pg_catalog.pg_attribute a
        ON a.attrelid = u.rel AND a.attname = p_column
       AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE u.rel <> p_target::oid AND a.attgenerated <> ''
     ORDER BY u.depth, c.oid::regclass::text
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RAISE EXCEPTION '% column "%" of %, a table under %, is generated (AS (%)): '
                    'an import cannot write % into it',
                    CASE WHEN p_what = 'the job''s scope' THEN 'the scope' ELSE 'the' END,
                    v_child.attname, v_child.rel, p_target, v_child.expr, p_what
        USING ERRCODE = '22023',
        HINT = format('PostgreSQL computes a partition''s generated column whatever its '
                      'parent is given, so rows would get the value it computes. Make it a '
                      'plain column as in %s: %s; ALTER TABLE %s ALTER COLUMN %I DROP '
                      'EXPRESSION; %s (or load such a table with INSERT of your own).',
                      p_target,
                      CASE WHEN v_child.relispartition
                           THEN format('ALTER TABLE %s DETACH PARTITION %s', v_child.parent,
                                       v_child.rel)
                           ELSE format('ALTER TABLE %s NO INHERIT %s', v_child.rel,
                                       v_child.parent) END,
                      v_child.rel, v_child.attname,
                      CASE WHEN v_child.relispartition
                           THEN format('ALTER TABLE %s ATTACH PARTITION %s %s', v_child.parent,
                                       v_child.rel, v_child.bound)
                           ELSE format('ALTER TABLE %s INHERIT %s', v_child.rel,
                                       v_child.parent) END);
END
$$;

COMMENT ON FUNCTION pgjobs._import_generated_below(regclass, text, text) IS
'Raises 22023 when a table under an import''s target generates a column the import writes '
'(PostgreSQL 15 would store the child''s value), the hint the DETACH / DROP EXPRESSION / ATTACH '
'that fixes it.';
