CREATE OR REPLACE FUNCTION pgjobs._judge_fields(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_paths text[],
    p_options jsonb,
    p_what text DEFAULT 'filter')
RETURNS text[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The typo guard of submit_delete, submit_backfill and submit_export, in
-- one look at the scope: a document path named by the job (p_paths: its
-- filter's, from the compiler, an export's document columns, a backfill's
-- slipped set keys) that no row of scope p_scope (canonical text) has is
-- refused with 22023 naming it, unless p_options says
-- {"allow_unknown_fields": true} (validated here: a boolean, 22023
-- otherwise). A misspelt field would otherwise match nothing or, under
-- $ne / $nin / $exists: false / null / $not, every row of the scope.
-- The operator does not matter: `{"x": {"$exists": false}}` on a field no
-- row has selects the whole scope, which is what the option is for.
-- Returns the paths it could not judge because the walk read no row of the
-- scope (distinct, sorted; the submit stores them as the job's
-- unchecked_fields, judged when the job starts: pgjobs._unchecked_fields_problem),
-- NULL otherwise. Judged and deferred on the same walk: a submit that
-- first asked whether the scope had rows (pgjobs._fields_unchecked) and then
-- walked it let a scope emptied between the two looks (an application's
-- DELETE committing in between) pass as neither judged nor deferred, and
-- rows refilled later were read unjudged.
-- Which rows are read, and the bound past which an unseen path counts as
-- unknown: pgjobs._unknown_fields. The scope is checked against
-- pgjobs.allowed_scopes first (42501), before any of its rows is read.
-- The hint names the likely meaning of the first path it can guess
-- (the document column's name as a prefix, a column in another case, a
-- field of the scope's rows one slip away: pgjobs._field_guess).
-- Locks nothing.
DECLARE
    v_check record;
    v_guess text;
    v_unseen text;
    v_allow jsonb := CASE WHEN jsonb_typeof(p_options) = 'object'
                          THEN p_options -> 'allow_unknown_fields' END;
BEGIN
    PERFORM pgjobs._option_bool('allow_unknown_fields', v_allow);
    IF v_allow = 'true'::jsonb OR cardinality(coalesce(p_paths, '{}')) = 0
       OR p_reg.document_column IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgjobs._require_scope(p_reg.target, p_scope);
    SELECT * INTO v_check FROM pgjobs._unknown_fields(p_reg, p_scope, p_paths);
    IF v_check.p_rows_read = 0 THEN
        -- Nothing to judge them by: deferred to the job's start.
        RETURN (SELECT array_agg(DISTINCT p ORDER BY p) FROM unnest(p_paths) p
                 WHERE p IS NOT NULL);
    END IF;
    IF cardinality(v_check.p_unknown) = 0 THEN
        RETURN NULL;
    END IF;
    -- The spellings a new user gets wrong first, named in the hint: a
    -- path that starts with the document column's name in any case
    -- ("data.status", "Data.status": paths are relative to the document),
    -- a column in another case ("Label" for label: identifiers are
    -- compared exactly) or in look-alike characters (full-width
    -- "ｌａｂｅｌ"), and a name with white space around it (" label").
    -- (pgjobs._field_slip, the one test of both.) A path that is a slip
    -- only for an invisible character in it ("sta<U+200B>tus") is named
    -- by the guess below first, which shows such characters as code
    -- points; by the slip's sentence when the guess finds nothing.
    SELECT (array_agg(h.hint ORDER BY h.n) FILTER (WHERE h.first))[1],
           (array_agg(h.hint ORDER BY h.n) FILTER (WHERE NOT h.first))[1]
      INTO v_guess, v_unseen
      FROM (SELECT x.n,
                   s.column_name IS NOT NULL OR pgjobs._field_seen(x.u) = x.u AS first,
                   CASE WHEN s.relative_path IS NOT NULL
                        THEN format('Paths are relative to column %I, and white space around '
                                    'a name (or an invisible character in it) is part of it: '
                                    'write "%s", not "%s". ',
                                    p_reg.document_column,
                                    -- "data.NEST.a": the path of the rows it looks like.
                                    pgjobs._clipped(coalesce(pgjobs._field_twin(p_reg, p_scope,
                                        s.relative_path, NULL), s.relative_path)),
                                    pgjobs._clipped(x.u))
                        ELSE format('Did you mean column "%s"? Names are compared exactly '
                                    '(case, white space around a name and look-alike '
                                    'characters count). ', pgjobs._clipped(s.column_name))
                   END AS hint
              FROM unnest(v_check.p_unknown) WITH ORDINALITY AS x(u, n),
                   pgjobs._field_slip(p_reg, x.u) s
             WHERE s.relative_path IS NOT NULL OR s.column_name IS NOT NULL) h;
    -- Else a document field of the scope's rows that the path is one slip
    -- from: another case, a full-width or decomposed letter, an invisible
    -- character, a swap or a wrong letter ("stauts" for "status"):
    -- pgjobs._field_guess, the one guess of the guard at a submit and at a
    -- job's start.
    IF v_guess IS NULL THEN
        SELECT g.guess
          INTO v_guess
          FROM unnest(v_check.p_unknown) WITH ORDINALITY AS x(u, n),
               LATERAL (SELECT pgjobs._field_guess(p_reg, p_scope, x.u) AS guess) g
         WHERE g.guess IS NOT NULL
         ORDER BY x.n
         LIMIT 1;
    END IF;
    v_guess := coalesce(v_guess, v_unseen);
    IF v_check.p_complete THEN
        RAISE EXCEPTION 'the % names document field %, which no row of scope % has',
            p_what, pgjobs._quoted_fields(v_check.p_unknown),
            quote_literal(pgjobs._clipped(p_scope))
            USING ERRCODE = '22023',
            HINT = coalesce(v_guess, '') || format('Check the spelling (fields are case-sensitive, '
                          'nested ones a.b.c, in column %I). If the field is meant to be '
                          'absent, pass the option {"allow_unknown_fields": true}.',
                          p_reg.document_column);
    END IF;
    RAISE EXCEPTION 'the % names document field %, which none of the first % rows of scope % '
                    'has', p_what,
        pgjobs._quoted_fields(v_check.p_unknown),
        v_check.p_rows_read, quote_literal(pgjobs._clipped(p_scope))
        USING ERRCODE = '22023',
        HINT = coalesce(v_guess, '') || format('Check the spelling (fields are case-sensitive, '
                      'nested ones a.b.c, in column %I). pgjobs looks for a field in at most 1000000 rows of the '
                      'scope (the pgjobs.field_check_rows setting); if the field is right but '
                      'rare, pass the option {"allow_unknown_fields": true}.',
                      p_reg.document_column);
END
$$;
