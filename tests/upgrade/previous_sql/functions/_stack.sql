CREATE OR REPLACE FUNCTION pgjobs._stack()
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The call stack as pgjobs._enter and pgjobs._entered read it: one element
-- per PG_CONTEXT line below this function's own, element 1 the line of the
-- function that called this one. An element is the signature of the
-- function (as PL/pgSQL prints it: compiled under a pinned search_path, a
-- pgjobs function is schema-qualified) when its line is a PL/pgSQL frame
-- "PL/pgSQL function <signature> line <n> at <statement>" in the language
-- of lc_messages, else NULL (an SQL statement's text, an SQL function's
-- line, a frame during a function's entry or exit). The translation can put
-- the statement and line number before the name (zh_CN), the name first
-- (tr) or in quotes (ko), so the line is not cut at a prefix: a template is
-- read off line 1, this function's own frame, split at its own signature:
-- its statement (GET DIAGNOSTICS, which no catalog translates) matches any
-- text but a double quote, its line number any digits, the rest itself.
-- The signature's start is then fixed: text a role chooses (a function's or
-- a schema's name) is printed inside double quotes, which the statement's
-- part of the template cannot cross. Depth of element i, counted from the
-- bottom of the stack as pgjobs.call_<depth> is: cardinality - i + 1.
-- The escaping is plain replace, so the template is the one regex to
-- compile (this runs a few times in every client call). Locks nothing.
DECLARE
    v_ctx text;
    v_lines text[];
    v_at integer;
    v_template text;
    v_stack text[] := ARRAY[]::text[];
BEGIN
    GET DIAGNOSTICS v_ctx = PG_CONTEXT;
    v_lines := string_to_array(v_ctx, E'\n');
    v_at := strpos(v_lines[1], 'pgjobs._stack()');
    IF v_at = 0 THEN
        RETURN NULL;
    END IF;
    -- line 1 with every character a regex gives a meaning escaped (plain
    -- replace: no regex to compile besides the template), then its parts
    v_template := v_lines[1];
    v_template := replace(v_template, E'\\', E'\\\\');
    v_template := replace(v_template, '.', E'\\.');
    v_template := replace(v_template, '^', E'\\^');
    v_template := replace(v_template, '$', E'\\$');
    v_template := replace(v_template, '*', E'\\*');
    v_template := replace(v_template, '+', E'\\+');
    v_template := replace(v_template, '?', E'\\?');
    v_template := replace(v_template, '(', E'\\(');
    v_template := replace(v_template, ')', E'\\)');
    v_template := replace(v_template, '[', E'\\[');
    v_template := replace(v_template, ']', E'\\]');
    v_template := replace(v_template, '{', E'\\{');
    v_template := replace(v_template, '}', E'\\}');
    v_template := replace(v_template, '|', E'\\|');
    v_template := '^' || replace(replace(regexp_replace(v_template, '[0-9]+', '[0-9]+', 'g'),
                                         'GET DIAGNOSTICS', '[^"]+'),
                                 E'pgjobs\\._stack\\(\\)', '(.+?)') || '$';
    FOR i IN 2 .. cardinality(v_lines) LOOP
        v_stack[i - 1] := substring(v_lines[i] FROM v_template);
    END LOOP;
    RETURN v_stack;
END
$$;

COMMENT ON FUNCTION pgjobs._stack() IS
'Internal: the call stack below its caller, one element a PG_CONTEXT line: the function''s '
'signature when the line is a PL/pgSQL frame in the language of lc_messages, else NULL.';
