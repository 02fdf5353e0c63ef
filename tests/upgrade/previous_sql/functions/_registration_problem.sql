CREATE OR REPLACE FUNCTION pgjobs._registration_problem(
    p_target     regclass,
    p_key        name,
    p_scope      name,
    p_created_at name,
    p_document   name,
    p_in_use     boolean DEFAULT false,
    OUT message    text,
    OUT hint       text,
    OUT errcode    text,
    OUT key_type   oid,
    OUT scope_type oid)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $function$
-- Whether p_target's columns, as they are now, fit the roles a registration
-- gives them (key, scope, created_at, document): the first misfit as the
-- message, hint and SQLSTATE of the error register_target raises for it,
-- or all three NULL. Also the key's and the scope's type oids. One rule,
-- asked twice: register_target before it writes the registration, and
-- pgjobs._target (every path that takes a target: submits, preview, the
-- read path, pages, chunks, imports) against the registration as stored,
-- since ALTER TABLE may change a column after registration: a scope
-- column given a nondeterministic collation (or citext, or money) would
-- make one tenant's scope match another tenant's rows. p_in_use (the
-- registered target, from pgjobs._target) leaves out the key's NOT NULL,
-- which pages and export chunks check on their own. Generic plans
-- (plan_cache_mode), as pgjobs._untrusted_roles says why: its catalog
-- lookups were re-planned on every call. Locks nothing.
DECLARE
    v_all_cols   text;
    v_role       text;
    v_col        name;
    v_attnum     smallint;
    v_type       oid;
    v_base       oid;
    v_typtype    "char";
    v_nsp        name;
    v_rel        name;
BEGIN
    SELECT n.nspname, c.relname INTO v_nsp, v_rel
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_target;
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO v_all_cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped;

    -- Each named column: exists, and has a type that fits its role.
    FOREACH v_role IN ARRAY ARRAY['key', 'scope', 'created_at', 'document'] LOOP
        v_col := CASE v_role WHEN 'key' THEN p_key WHEN 'scope' THEN p_scope
                             WHEN 'created_at' THEN p_created_at ELSE p_document END;
        IF v_col IS NULL THEN
            CONTINUE WHEN v_role = 'document';
            message := format('the %s column must not be NULL', v_role);
            errcode := '22023';
            hint := format('Columns of %s: %s.', p_target, v_all_cols);
            RETURN;
        END IF;

        SELECT a.attnum, a.atttypid INTO v_attnum, v_type
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_target AND a.attname = v_col AND a.attnum > 0
           AND NOT a.attisdropped;
        IF NOT FOUND THEN
            message := format('column "%s" (the %s column) does not exist in table %s',
                            v_col, v_role, p_target);
            errcode := '22023';
            hint := format('Columns of %s: %s.', p_target, v_all_cols);
            RETURN;
        END IF;

        -- Domains are judged by their base type.
        v_base := pgjobs._base_type(v_type);
        SELECT t.typtype INTO v_typtype FROM pg_catalog.pg_type t WHERE t.oid = v_base;

        -- A domain over an enum has no = or < of its own: the enum's are
        -- polymorphic (anyenum), which PostgreSQL does not match to a domain,
        -- so neither pgjobs nor the application's own WHERE could compare it
        -- with a value ("operator does not exist: d = d").
        IF v_role IN ('key', 'scope') AND v_type <> v_base AND v_typtype = 'e' THEN
            message := format('column "%s" of type %s cannot be the %s of %s: it is a domain '
                            'over the enum %s, which PostgreSQL cannot compare', v_col,
                            format_type(v_type, NULL), v_role, p_target,
                            format_type(v_base, NULL));
            errcode := '22023';
            hint := format('Give the column the enum type itself (ALTER TABLE %I.%I ALTER '
                           'COLUMN %I TYPE %s), or key or scope by a text column.',
                           v_nsp, v_rel, v_col, format_type(v_base, NULL));
            RETURN;
        END IF;
        IF v_role IN ('key', 'scope') AND pgjobs._foreign_comparisons(v_type) THEN
            message := format('column "%s" of type %s cannot be the %s of %s: its comparison '
                            'operators are not in pg_catalog', v_col, format_type(v_type, NULL),
                            v_role, p_target);
            errcode := '22023';
            hint := 'pgjobs compares with pg_catalog''s operators only (an extension '
                             'type such as citext would compare as text). Key or scope by a '
                             'column of a built-in type, e.g. a generated column '
                             '(lower(name)::text) with its own index.';
            RETURN;
        END IF;
        -- Keys and scopes are stored and compared as text (cursors, scope
        -- literals), printed under settings every pgjobs routine pins; money
        -- prints and parses under lc_monetary, a locale a runner or client
        -- may differ in: a cursor printed by one runner might not read back
        -- in another, and a tenant would have no one spelling.
        IF v_role IN ('key', 'scope') AND v_base = 'money'::regtype THEN
            message := format('column "%s" of type %s cannot be the %s of %s: its text depends '
                            'on lc_monetary', v_col, format_type(v_type, NULL), v_role, p_target);
            errcode := '22023';
            hint := 'money reads and prints by the session''s lc_monetary, so a key '
                             'or a tenant would have no one spelling: key or scope by a '
                             'numeric, integer or text column (e.g. bigint cents).';
            RETURN;
        END IF;
        IF v_role = 'key' THEN
            -- The keyset walk needs a total order that a btree can serve.
            IF v_base IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype)
               OR v_typtype = 'p'
               OR NOT EXISTS (SELECT 1 FROM pgjobs._btree_opclasses(v_base)) THEN
                message := format('column "%s" of type %s cannot be the key of %s',
                                v_col, format_type(v_type, NULL), p_target);
                errcode := '22023';
                hint := 'The key must be unique within a scope and totally ordered by '
                                 'a btree: e.g. bigint, integer, text, uuid, timestamptz.';
                RETURN;
            END IF;
            -- A NULL key is out of reach of the keyset walk: its row would
            -- survive a delete reported as succeeded.
            -- (p_in_use: a registered target's pages and export chunks check
            -- this themselves, failing the job with the fix in its error, and
            -- the read path may go on reading such a table.)
            IF NOT p_in_use AND NOT (SELECT a.attnotnull FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = p_target AND a.attnum = v_attnum) THEN
                message := format('key column "%s" of %s allows NULL', v_col, p_target);
                errcode := '55000';
                hint := format('ALTER TABLE %I.%I ALTER COLUMN %I SET NOT NULL;',
                                        v_nsp, v_rel, v_col);
                RETURN;
            END IF;
            key_type := v_type;
        ELSIF v_role = 'scope' THEN
            -- A scope is one tenant whatever its spelling: pgjobs stores and
            -- compares it as canonical text (pgjobs._canonical_scope). That
            -- needs values that are equal only when they are the same value
            -- (the btree "equalimage" property, as deduplication needs), or
            -- a type pgjobs._canonical_text brings to one form (numeric,
            -- floats, interval); and a deterministic collation.
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                         JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                        WHERE a.attrelid = p_target AND a.attnum = v_attnum
                          AND NOT co.collisdeterministic) THEN
                message := format('scope column "%s" of %s has a nondeterministic collation',
                                v_col, p_target);
                errcode := '22023';
                hint := 'Values such a collation calls equal are different texts, so a '
                                 'scope would have no one spelling: give the column a '
                                 'deterministic collation (COLLATE "C"), or scope by a generated '
                                 'column, e.g. scope_key text GENERATED ALWAYS AS (lower(scope)) '
                                 'STORED.';
                RETURN;
            END IF;
            -- ... whose text input reads a value exactly and whose text
            -- names the same value tomorrow (pgjobs._scope_type_inexact).
            IF pgjobs._scope_type_inexact(v_type) IS NOT NULL THEN
                message := format('column "%s" of type %s cannot be the scope of %s: %s', v_col,
                                  format_type(v_type, NULL), p_target,
                                  pgjobs._scope_type_inexact(v_type));
                errcode := '22023';
                hint := 'A tenant must have one spelling that always names it: scope by a '
                        'column of a plain type, e.g. bigint, integer, text, uuid or oid (for '
                        'a table, its oid: regclass::oid).';
                RETURN;
            END IF;
            IF v_base NOT IN ('numeric'::regtype, 'real'::regtype, 'double precision'::regtype,
                              'interval'::regtype)
               AND NOT EXISTS (
                    -- ... whose btree family has an equalimage function (4).
                    SELECT 1 FROM pgjobs._btree_opclasses(v_base) oc
                      JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.family
                                                  AND ap.amproclefttype = oc.intype
                                                  AND ap.amprocrighttype = oc.intype
                                                  AND ap.amprocnum = 4) THEN
                message := format('column "%s" of type %s cannot be the scope of %s',
                                v_col, format_type(v_type, NULL), p_target);
                errcode := '22023';
                hint := 'A scope needs a type whose equal values are the same value, so '
                                 'that each tenant has one spelling: e.g. bigint, integer, text, '
                                 'uuid, date, numeric.';
                RETURN;
            END IF;
            scope_type := v_type;
        ELSIF v_role = 'created_at' THEN
            IF v_base NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
                message := format('column "%s" of type %s cannot be the created_at column of %s',
                                v_col, format_type(v_type, NULL), p_target);
                errcode := '22023';
                hint := 'created_at must be timestamptz (or timestamp).';
                RETURN;
            END IF;
        ELSE
            IF v_base <> 'jsonb'::regtype THEN
                message := format('column "%s" of type %s cannot be the document column of %s',
                                v_col, format_type(v_type, NULL), p_target);
                errcode := '22023';
                hint := 'The document column must be jsonb; pass p_document => NULL '
                                 'when the table has none.';
                RETURN;
            END IF;
        END IF;
    END LOOP;

    IF p_key = p_scope THEN
        message := format('the key and scope columns must differ (both are "%s")', p_key);
        errcode := '22023';
        hint := 'The scope column partitions the table (e.g. table_id); the key orders rows within a scope (e.g. id).';
        RETURN;
    END IF;
END
$function$;
