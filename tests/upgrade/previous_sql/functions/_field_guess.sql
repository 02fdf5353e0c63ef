CREATE OR REPLACE FUNCTION pgjobs._field_guess(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_path text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The typo guard's hint sentence naming the document path that p_path, a
-- path no row of scope p_scope (canonical text) has, probably means, and
-- p_path as written (characters outside printable ASCII as <U+XXXX>);
-- NULL when no path is close. Candidates: the keys found at p_path's parent in the scope's first
-- 1,000 rows in key order (the (scope, key) index; the guard's walk read
-- them already), or at the path of those rows that the parent only looks
-- like (pgjobs._field_twin: "NEST.a" for nest.a) when no row has it. Compared after folding what a reader cannot see or tell
-- apart: case, Unicode compatibility forms and composition (NFKC: a
-- full-width "ｓtatus", a decomposed "café"), zero-width and other format
-- characters, white space around the name. The folded names equal, or at
-- most one edit apart (two for names of 8 or more characters; a swap of
-- two neighbours is one edit: "stauts"), the closest wins, then the first
-- in sort order. Asked only on the way to an error. Locks nothing beyond
-- the read (ACCESS SHARE on the target).
DECLARE
    v_parts text[] := string_to_array(p_path, '.');
    v_keys text[];
    v_key text;
    v_want text;
    v_have text;
    v_best text;
    v_best_cost integer;
    v_cost integer;
    v_limit integer;
    v_prev integer[];
    v_row integer[];
    v_older integer[];
    v_parent text[];
    v_twin text;
BEGIN
    IF p_reg.document_column IS NULL OR p_path IS NULL OR cardinality(v_parts) = 0 THEN
        RETURN NULL;
    END IF;
    v_parent := v_parts[1:cardinality(v_parts) - 1];
    v_keys := pgjobs._scope_keys_at(p_reg, p_scope, v_parent, NULL);
    IF v_keys IS NULL AND cardinality(v_parent) > 0 THEN
        -- No object at the parent as written: a parent in another case or
        -- in look-alike characters ("NEST.a" for nest.a) is named by the
        -- one look-alike test, pgjobs._field_twin, and its keys read.
        v_twin := pgjobs._field_twin(p_reg, p_scope, array_to_string(v_parent, '.'), NULL);
        IF v_twin IS NOT NULL THEN
            v_parent := string_to_array(v_twin, '.');
            v_keys := pgjobs._scope_keys_at(p_reg, p_scope, v_parent, NULL);
        END IF;
    END IF;
    v_want := pgjobs._field_fold(v_parts[cardinality(v_parts)]);
    v_limit := CASE WHEN length(v_want) >= 8 THEN 2 WHEN length(v_want) >= 3 THEN 1 ELSE 0 END;
    FOREACH v_key IN ARRAY coalesce(v_keys[1:500], '{}') LOOP
        v_have := pgjobs._field_fold(v_key);
        CONTINUE WHEN abs(length(v_have) - length(v_want)) > v_limit;
        IF v_have = v_want THEN
            v_cost := 0;
        ELSE
            -- Edit distance with swaps of neighbours (optimal string alignment).
            v_older := NULL;
            v_prev := ARRAY(SELECT generate_series(0, length(v_have)));
            FOR i IN 1 .. length(v_want) LOOP
                v_row := ARRAY[i];
                FOR j IN 1 .. length(v_have) LOOP
                    v_cost := least(v_prev[j + 1] + 1, v_row[j] + 1,
                                    v_prev[j] + CASE WHEN substr(v_want, i, 1) = substr(v_have, j, 1)
                                                     THEN 0 ELSE 1 END);
                    IF i > 1 AND j > 1 AND substr(v_want, i, 1) = substr(v_have, j - 1, 1)
                       AND substr(v_want, i - 1, 1) = substr(v_have, j, 1) THEN
                        v_cost := least(v_cost, v_older[j - 1] + 1);
                    END IF;
                    v_row := v_row || v_cost;
                END LOOP;
                v_older := v_prev;
                v_prev := v_row;
            END LOOP;
            v_cost := v_prev[length(v_have) + 1];
            CONTINUE WHEN v_cost > v_limit OR v_limit = 0;
        END IF;
        IF v_best_cost IS NULL OR v_cost < v_best_cost THEN
            v_best := v_key;
            v_best_cost := v_cost;
        END IF;
    END LOOP;
    IF v_best IS NULL AND v_twin IS NOT NULL THEN
        v_best := v_parts[cardinality(v_parts)];  -- the parent's twin alone
    END IF;
    IF v_best IS NULL OR (v_best = v_parts[cardinality(v_parts)] AND v_twin IS NULL) THEN
        RETURN NULL;
    END IF;
    -- Both names, the one meant and the one written, each character outside
    -- printable ASCII (and the quote that delimits them) shown as its code
    -- point: "sta<U+200B>tus" and "status" look the same in print. The name
    -- meant comes from the rows: printed raw, a key with an invisible
    -- character read exactly like the name written, and one with a newline
    -- or quote could write lines of its own into the hint. Each is clipped
    -- first (pgjobs._clipped).
    RETURN format('Did you mean document field "%s", not "%s"? ',
                  (SELECT string_agg(CASE WHEN ascii(c.ch) BETWEEN 32 AND 126 AND c.ch <> '"'
                                          THEN c.ch
                                          ELSE format('<U+%s>',
                                                      upper(lpad(to_hex(ascii(c.ch)), 4, '0')))
                                     END, '' ORDER BY c.n)
                     FROM regexp_split_to_table(pgjobs._clipped(
                              array_to_string(v_parent || v_best, '.')),
                              '') WITH ORDINALITY AS c(ch, n)),
                  (SELECT string_agg(CASE WHEN ascii(c.ch) BETWEEN 32 AND 126 AND c.ch <> '"'
                                          THEN c.ch
                                          ELSE format('<U+%s>',
                                                      upper(lpad(to_hex(ascii(c.ch)), 4, '0')))
                                     END, '' ORDER BY c.n)
                     FROM regexp_split_to_table(pgjobs._clipped(p_path), '')
                          WITH ORDINALITY AS c(ch, n)));
END
$$;
