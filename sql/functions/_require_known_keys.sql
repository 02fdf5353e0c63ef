CREATE OR REPLACE FUNCTION pgjobs._require_known_keys(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_keys text[],
    p_options jsonb)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The exclude list's typo guard, the twin of the filter's
-- (pgjobs._judge_fields), asked by pgjobs.submit_delete and pgjobs.preview
-- (so `pgjobs delete --dry-run` shows the refusal the submit gives): every
-- key of p_keys (as given, already validated as keys of the key column's
-- type by pgjobs._row_selection, so the message shows what was written) must name a
-- row of scope p_scope (canonical) that the read path still shows (not
-- hidden by a pending delete: pgjobs._mask). A key that names no such row
-- (a typo, white space around it, a key of another scope, a row deleted
-- already or being deleted by another job) keeps nothing, so the row the
-- user meant to keep went with the rest; it is refused with 22023 naming
-- such keys (the first 10, in the order given), unless p_options says
-- {"allow_unknown_keys": true} (validated here: a boolean, 22023 otherwise).
-- Each key and the scope are quoted clipped (pgjobs._clipped).
-- Only the scope's own rows are read, so the message is the same for a key
-- of another scope and a key of no row (never a probe of other tenants'
-- keys); the scope is checked against pgjobs.allowed_scopes first (42501).
-- A row created after the cutoff cannot be in the submit's snapshot: a key
-- of a row still to come is refused too (the option is for that).
-- The keys are cast in the caller's session, as pgjobs._row_selection
-- parsed them (a date key '03/04/2030' under DMY). One index probe of
-- (scope, key) per key given; the keys are deduplicated after the probe, not
-- before (a GROUP BY first hid the list's length from the planner: 200 rows
-- expected, a hash spilled to disk at 100,000 keys), and the mask is
-- pgjobs._mask's count form (the same rows; the planner may hash a pending
-- delete's job_exclusions list instead of probing it once per key).
-- Locks nothing.
DECLARE
    v_allow boolean := pgjobs._option_bool('allow_unknown_keys',
        CASE WHEN jsonb_typeof(p_options) = 'object' THEN p_options -> 'allow_unknown_keys' END);
    v_unknown text[];
    v_count bigint;
    v_mask text;
BEGIN
    IF coalesce(v_allow, false) OR cardinality(coalesce(p_keys, '{}')) = 0 THEN
        RETURN;
    END IF;
    PERFORM pgjobs._require_scope(p_reg.target, p_scope);
    v_mask := pgjobs._mask(p_reg.target, p_scope, true);
    EXECUTE format(
        'SELECT count(*), (array_agg(u.k ORDER BY u.o))[1:10] '
        'FROM (SELECT e.k, min(e.o) AS o FROM unnest($1) WITH ORDINALITY AS e(k, o) '
        'WHERE NOT EXISTS (SELECT FROM %s t WHERE t.%I OPERATOR(pg_catalog.=) %s '
        'AND t.%I = %s AND (%s)) GROUP BY e.k) u',
        p_reg.target, p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope),
        p_reg.key_column,
        pgjobs._text_input('e.k', pgjobs._column_type(p_reg.target, p_reg.key_column)), v_mask)
       INTO v_count, v_unknown
      USING p_keys;
    IF v_count = 0 THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'exclude names % that no row of scope % has: %',
        CASE WHEN v_count = 1 THEN 'a key' ELSE format('%s keys', v_count) END,
        quote_literal(pgjobs._clipped(p_scope)),
        array_to_string(ARRAY(SELECT to_jsonb(pgjobs._clipped(k))::text
                                FROM unnest(v_unknown) k), ', ')
        || CASE WHEN v_count > 10 THEN format(' and %s more', v_count - 10) ELSE '' END
        USING ERRCODE = '22023',
        HINT = 'An excluded key keeps a row only if it is the key of a row of this scope, '
               'written exactly (white space counts), and not deleted already or by a '
               'pending delete; a key that names no row keeps nothing. Check the keys '
               '(pgjobs.visible lists the scope''s rows); if they are meant to name no row '
               'yet, submit with the option {"allow_unknown_keys": true}.';
END
$$;
