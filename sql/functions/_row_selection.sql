CREATE OR REPLACE FUNCTION pgjobs._row_selection(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_filter jsonb,
    p_exclude text[],
    p_cutoff timestamptz,
    OUT predicate text,
    OUT survivors jsonb,
    OUT head text,
    OUT keys text[],
    OUT paths text[])
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The exact row set of a delete or backfill job, as one SQL boolean over
-- the target's unqualified columns: the scope, created at or before the
-- cutoff, matching the filter, key not excluded. Values are inlined as
-- quoted, typed literals, so the text is self-contained: it is stored in
-- pgjobs.jobs.predicate and used verbatim by the runner's pages and by the
-- read mask, which therefore cover exactly the same rows.
-- Which rows count as existing at the cutoff is pgjobs._cutoff_clause's
-- business (created_at, and the submit's snapshot for rows of transactions
-- still in progress). Literals are written in ISO 8601 so the runner's
-- DateStyle cannot change their meaning. Raises 22023 for a bad scope,
-- filter or exclusion. Locks nothing.
-- Returns the text (predicate) and, as data, what of the scope the row set
-- leaves (survivors, stored in jobs.survivors by a delete): whether it has
-- no filter (whole_scope), the created_at column, the cutoff's horizon and
-- how its literal is written, and the excluded keys (canonical text) with
-- the key column and its type: the columns as the predicate names them,
-- whatever a later register_target changes. For a whole-scope row set, a row of the scope outside it is dated
-- at or after the horizon, or undated, or excluded (pgjobs._mask_candidates
-- builds that condition from these fields, so it matches this text).
-- The exclusion is pgjobs._exclusion_clause's, written here inline (and
-- the keys in survivors.exclude). A list of more than 100 keys of a key
-- type whose text is its identity (integers, uuid, text and varchar of a
-- deterministic collation) goes to pgjobs.job_exclusions instead: then
-- survivors says "exclusions": "table" and how many keys, and a delete's
-- submit stores the keys (keys: canonical) and appends the clause that
-- probes them to head (the predicate without its exclusion); pgjobs.preview
-- shows the inline form, which selects the same rows.
-- paths: the filter's document paths (pgjobs._compile_filter), for the
-- typo guard.
DECLARE
    v_exclude text;
    v_key_type text;
    v_exact boolean;
    v_cutoff record;
    v_filter text;
    v_type oid;
    v_deterministic boolean;
    v_identity boolean := false;
    v_state text;
BEGIN
    -- An unset list of keys to keep is refused, never read as '{}' (keep
    -- none): an application whose "all except these" request lost its
    -- list passed NULL, and the delete took the rows it was told to keep.
    -- The same rule as a NULL filter's (pgjobs._compile_filter).
    IF p_exclude IS NULL THEN
        RAISE EXCEPTION 'exclude must be an array of keys, not NULL' USING ERRCODE = '22023',
            HINT = 'List the keys of the rows to keep, or pass ''{}'' (an empty array) to '
                   'keep none of the rows the filter matches.';
    END IF;
    IF cardinality(p_exclude) > 100000 THEN
        RAISE EXCEPTION 'exclude lists % keys; the limit is 100000', cardinality(p_exclude)
            USING ERRCODE = '22023',
            HINT = 'Exclude rows with a filter instead, e.g. {"$not": {...}}.';
    END IF;
    IF array_position(p_exclude, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'exclude must not contain null' USING ERRCODE = '22023',
            HINT = 'List the keys of the rows to keep.';
    END IF;
    IF cardinality(p_exclude) > 0 THEN
        -- Canonical text of each key, cast to the key column's full type
        -- (pgjobs._typed_literal, pgjobs._canonical_text).
        -- A key the column's modifiers would change (a char(8) key
        -- 'key000031' truncated to 'key00003') is no key of the table.
        v_key_type := pgjobs._column_type(p_reg.target, p_reg.key_column);
        -- Is the key's text its identity (pgjobs._exclusion_clause)?
        SELECT a.atttypid, coalesce(co.collisdeterministic, true)
          INTO v_type, v_deterministic
          FROM pg_catalog.pg_attribute a
          LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
         WHERE a.attrelid = p_reg.target AND a.attname = p_reg.key_column;
        v_type := pgjobs._base_type(v_type);  -- a domain to its base type
        v_identity := v_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
                                 'uuid'::regtype)
                      OR (v_type IN ('text'::regtype, 'character varying'::regtype)
                          AND v_deterministic);
        -- (Such a key's ::text is its canonical text: no call per key, which
        -- cost seconds for 100,000 keys.)
        BEGIN
            -- (Each key read by the type's input, as a literal is:
            -- pgjobs._text_input.)
            EXECUTE format('SELECT array_agg(%3$s), '
                           'coalesce(bool_and(%1$s = %2$s), true) '
                           'FROM unnest($1) e', pgjobs._text_input('e', v_key_type),
                           pgjobs._text_input('e', pgjobs._column_type(p_reg.target,
                                                                       p_reg.key_column, false)),
                           format(CASE WHEN v_identity THEN '(%s)::text'
                                       ELSE 'pgjobs._canonical_text(%s)' END,
                                  pgjobs._text_input('e', v_key_type)))
               INTO p_exclude, v_exact
              USING p_exclude;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation
                       -- an oid-alias key's name of no object, or a bad one
                       -- (pgjobs._oid_alias_type: the input looks names up)
                       OR undefined_table OR undefined_object OR undefined_function
                       OR ambiguous_function OR invalid_name OR syntax_error
                       OR invalid_schema_name THEN
            v_exact := false;  -- (23514: a key a CHECK of the key's domain refuses)
            v_state := SQLSTATE;
        END;
        IF NOT v_exact THEN
            -- (an unqualified name of an oid-alias key: pgjobs._oid_alias_hint)
            RAISE EXCEPTION 'exclude holds a value that is not a valid % (key column %)',
                v_key_type, p_reg.key_column
                USING ERRCODE = '22023',
                      HINT = coalesce(pgjobs._oid_alias_hint(v_type::regtype, v_state),
                                      'List keys of the rows to keep, as text.');
        END IF;
        v_exclude := pgjobs._exclusion_clause(p_reg.key_column, v_key_type, p_exclude, NULL);
    END IF;
    keys := p_exclude;
    SELECT c.* INTO v_cutoff FROM pgjobs._cutoff_clause(p_reg, p_cutoff) c;
    -- (p_reg was looked up and checked by the caller: pgjobs._target.)
    -- A NULL filter is refused there (22023), never read as {}: a client
    -- that passed an unset value would otherwise delete the whole scope.
    SELECT f.p_sql, f.p_paths INTO v_filter, paths
      FROM pgjobs._compile_filter(p_reg.target, p_filter, p_reg, p_scope) f;

    head := format('%I OPERATOR(pg_catalog.=) %s AND %s AND (%s)',
        p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope),
        v_cutoff.clause,
        v_filter);
    predicate := head || CASE WHEN v_exclude IS NULL THEN ''
                              ELSE format(' AND NOT (%s)', v_exclude) END;
    survivors := jsonb_build_object(
        'whole_scope', v_filter = 'true',
        'created_at_column', p_reg.created_at_column,
        'horizon', v_cutoff.horizon,
        'created_at_type', CASE WHEN v_cutoff.without_zone THEN 'timestamp'
                                ELSE 'timestamptz' END,
        'time_zone', v_cutoff.time_zone,
        'key_column', p_reg.key_column,
        'key_type', v_key_type,
        'exclude', to_jsonb(p_exclude));
    IF cardinality(p_exclude) > 100 AND v_identity THEN
        survivors := (survivors - 'exclude')
                     || jsonb_build_object('exclusions', 'table', 'excluded',
                                           (SELECT count(DISTINCT k) FROM unnest(p_exclude) k));
    END IF;
END
$$;
