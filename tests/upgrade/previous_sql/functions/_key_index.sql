CREATE OR REPLACE FUNCTION pgjobs._key_index(
    p_target regclass,
    p_scope  name,
    p_key    name,
    OUT key_index regclass,
    OUT usable    boolean,
    OUT fix       text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The one test of the (scope, key) btree index that the keyset walk needs,
-- for register_target (which refuses a table without a usable one) and
-- doctor's target.key_index (which reports it): a btree on p_target, not
-- partial, whose first two key columns are scope then key with their
-- default opclasses (so it serves the plain operators). Unique or not:
-- pgjobs needs the key unique within a scope, not an index that proves it
-- (a table partitioned by RANGE of created_at cannot have a unique index
-- without created_at in it). On a partitioned table the index is the
-- partitioned index of the parent: it is valid only when every partition
-- has its own index attached, so a valid one means every page of every
-- partition is served by an index.
--   key_index  the best candidate: a usable one, else an invalid one, else NULL
--   usable     valid and ready
--   fix        NULL when usable; else the SQL that makes one: REINDEX of an
--              invalid index (of an ordinary table); for an invalid partitioned
--              index, an index on each partition that lacks one, attached; a
--              CREATE INDEX statement when there is none (CONCURRENTLY except
--              on a partitioned table, where PostgreSQL does not allow it).
-- Locks nothing.
DECLARE
    v_relkind   "char";
    v_nsp       name;
    v_rel       name;
    v_scope_num smallint;
    v_key_num   smallint;
    v_leaf      record;
    v_name      text;
BEGIN
    SELECT c.relkind, n.nspname, c.relname INTO v_relkind, v_nsp, v_rel
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_target;
    SELECT max(a.attnum) FILTER (WHERE a.attname = p_scope),
           max(a.attnum) FILTER (WHERE a.attname = p_key)
      INTO v_scope_num, v_key_num
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped;

    SELECT i.indexrelid::regclass, i.indisvalid AND i.indisready
      INTO key_index, usable
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
     WHERE i.indrelid = p_target
       AND am.amname = 'btree'
       AND i.indpred IS NULL
       AND i.indnkeyatts >= 2
       AND i.indkey[0] = v_scope_num
       AND i.indkey[1] = v_key_num
       AND (SELECT bool_and(oc.opcdefault) FROM pg_catalog.pg_opclass oc
             WHERE oc.oid IN (i.indclass[0], i.indclass[1]))
     ORDER BY (i.indisvalid AND i.indisready) DESC, ic.relname
     LIMIT 1;
    usable := coalesce(usable, false);
    IF usable THEN
        RETURN;
    END IF;

    IF key_index IS NULL THEN
        fix := format('%s %I ON %I.%I USING btree (%I, %I);',
                      CASE WHEN v_relkind = 'p' THEN 'CREATE INDEX'
                           ELSE 'CREATE INDEX CONCURRENTLY' END,
                      pgjobs._free_index_name(p_target, ARRAY[p_scope, p_key]),
                      v_nsp, v_rel, p_scope, p_key);
    ELSIF v_relkind <> 'p' THEN
        fix := format('REINDEX INDEX CONCURRENTLY %s;', key_index);
    ELSE
        -- A partitioned index is invalid while a partition has no index
        -- attached to it (CREATE INDEX ... ON ONLY, or ATTACH of a
        -- partition whose index could not be matched): index each such
        -- partition, then attach its index.
        FOR v_leaf IN
            SELECT inh.inhrelid::regclass AS part
              FROM pg_catalog.pg_inherits inh
             WHERE inh.inhparent = p_target
               AND NOT EXISTS (
                     SELECT 1 FROM pg_catalog.pg_inherits ii
                       JOIN pg_catalog.pg_index x ON x.indexrelid = ii.inhrelid
                      WHERE ii.inhparent = key_index AND x.indrelid = inh.inhrelid)
             ORDER BY inh.inhrelid::regclass::text
        LOOP
            v_name := pgjobs._free_index_name(v_leaf.part, ARRAY[p_scope, p_key]);
            fix := concat_ws(' ', fix, format(
                'CREATE INDEX %s%I ON %s USING btree (%I, %I); ALTER INDEX %s ATTACH PARTITION %I.%I;',
                CASE WHEN (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = v_leaf.part)
                          = 'p' THEN '' ELSE 'CONCURRENTLY ' END,
                v_name, v_leaf.part, p_scope, p_key, key_index,
                (SELECT n.nspname FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = v_leaf.part), v_name));
        END LOOP;
        -- Every partition has one attached (a deeper level lacks one, or
        -- the catalog says invalid for another reason): build it again.
        fix := coalesce(fix, format('DROP INDEX %s; CREATE INDEX %I ON %I.%I USING btree (%I, %I);',
                                    key_index, (SELECT c.relname FROM pg_catalog.pg_class c
                                             WHERE c.oid = key_index),
                                    v_nsp, v_rel, p_scope, p_key));
    END IF;
END
$function$;
