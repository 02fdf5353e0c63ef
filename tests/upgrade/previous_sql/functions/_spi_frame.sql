CREATE OR REPLACE FUNCTION pgjobs._spi_frame(p_mode text)
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- How the server prints, in PG_CONTEXT and in the language of lc_messages,
-- the frame of an expression PL/pgSQL evaluates through SPI instead of its
-- simple fast path: ARRAY[the text before the expression's text, the text
-- after it] (in English 'SQL expression "' and '"' for p_mode 'expression',
-- the expression of a RETURN, IF or FOREACH; 'PL/pgSQL assignment "' and '"'
-- for 'assignment'). Read off a probe of each kind made here, kept off the
-- fast path by its subquery, whose frame p_mode 'line' returns (line 2 of
-- its own PG_CONTEXT). NULL for another p_mode. Only
-- pgjobs._sealed_frame reads it, when a client call's stack is not the
-- plain one. Locks nothing.
DECLARE
    v_line text;
    v_lines text[];
    v_text text;
BEGIN
    IF p_mode = 'line' THEN
        GET DIAGNOSTICS v_line = PG_CONTEXT;
        RETURN ARRAY[split_part(v_line, E'\n', 2)];
    ELSIF p_mode = 'assignment' THEN
        v_lines := (SELECT pgjobs._spi_frame('line'));
        v_text := 'v_lines := (SELECT pgjobs._spi_frame(''line''))';
    ELSIF p_mode = 'expression' THEN
        FOREACH v_line IN ARRAY (SELECT pgjobs._spi_frame('line')) LOOP
            v_lines := ARRAY[v_line];
        END LOOP;
        v_text := '(SELECT pgjobs._spi_frame(''line''))';
    ELSE
        RETURN NULL;
    END IF;
    IF strpos(v_lines[1], v_text) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN ARRAY[left(v_lines[1], strpos(v_lines[1], v_text) - 1),
                 substr(v_lines[1], strpos(v_lines[1], v_text) + length(v_text))];
END
$$;

COMMENT ON FUNCTION pgjobs._spi_frame(text) IS
'Internal: ARRAY[before, after]: the text the server prints around an expression''s text in '
'the PG_CONTEXT frame of an expression (p_mode expression) or assignment (assignment) '
'PL/pgSQL evaluates through SPI, in the language of lc_messages.';
