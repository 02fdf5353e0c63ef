-- The signature before p_before (an import judges by the rows from before the
-- job): gone in the transaction that creates this one (pgjobs migrate
-- applies every function file in one), with its callers' new versions;
-- the previous release's functions call it until then.
DROP FUNCTION IF EXISTS pgjobs._field_twin(pgjobs.target_registry, text, text);

CREATE OR REPLACE FUNCTION pgjobs._field_twin(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_path text,
    p_before timestamptz)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The document path of the scope's rows that p_path (a path that is no
-- column) only looks like, NULL otherwise. Part by part from the
-- document's top: a part that no row read has at its place but a key
-- there that differs from it and folds like it (pgjobs._field_fold: case,
-- NFKC, invisible characters, white space around) is that key; a part some
-- row has is kept; a part neither way is a new field, kept with the rest
-- of the path. "Status" where the rows say "status", "nest.A" for nest.a,
-- and a parent's twin: "NEST.a" and "NEST.b" for nest.a and nest.b (the
-- set or an import would write a second object NEST beside nest). The rows
-- read: the scope's first 1,000 in key order (pgjobs._scope_keys_at, the
-- read pgjobs._field_guess makes), or (p_before not NULL) the first 1,000
-- from before p_before among its first 10,000: an import judges its fields
-- by the rows from before the job (its cutoff), never by its own earlier
-- batches, and with what the bounded read found. When
-- p_path's parent is a path of those rows as written (so for every
-- top-level name) one read decides; a walk from the top, a read a level,
-- otherwise. For backfill's set keys (pgjobs._submit_backfill_as), an
-- import's fields (pgjobs._import_insert_sql, when its submitter may read
-- the document column) and the typo guard's hint (pgjobs._judge_fields).
-- Locks nothing beyond the reads (ACCESS SHARE on the target).
DECLARE
    v_parts text[] := string_to_array(p_path, '.');
    v_meant text[] := '{}'::text[];
    v_keys text[];
    v_twin text;
BEGIN
    IF p_reg.document_column IS NULL OR p_path IS NULL OR cardinality(v_parts) = 0 THEN
        RETURN NULL;
    END IF;
    v_keys := pgjobs._scope_keys_at(p_reg, p_scope, v_parts[1:cardinality(v_parts) - 1],
                                    p_before);
    IF v_keys IS NOT NULL OR cardinality(v_parts) = 1 THEN
        -- The parent as written is an object of those rows: only the last
        -- part can be a twin.
        v_meant := v_parts[1:cardinality(v_parts) - 1];
        v_parts := v_parts[cardinality(v_parts):];
    ELSE
        v_keys := pgjobs._scope_keys_at(p_reg, p_scope, '{}', p_before);
    END IF;
    FOR i IN 1 .. cardinality(v_parts) LOOP
        EXIT WHEN v_keys IS NULL;
        IF NOT v_parts[i] = ANY (v_keys) THEN
            SELECT k INTO v_twin FROM unnest(v_keys) k
             WHERE pgjobs._field_fold(k) = pgjobs._field_fold(v_parts[i])
             ORDER BY k LIMIT 1;
            -- None: a new field here, and what follows is new too.
            EXIT WHEN v_twin IS NULL;
            v_parts[i] := v_twin;
            v_twin := NULL;
        END IF;
        IF i < cardinality(v_parts) THEN
            v_keys := pgjobs._scope_keys_at(p_reg, p_scope, v_meant || v_parts[1:i], p_before);
        END IF;
    END LOOP;
    v_meant := v_meant || v_parts;
    IF array_to_string(v_meant, '.') = p_path THEN
        RETURN NULL;
    END IF;
    RETURN array_to_string(v_meant, '.');
END
$$;
