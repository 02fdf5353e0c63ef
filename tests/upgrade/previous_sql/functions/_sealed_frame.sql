CREATE OR REPLACE FUNCTION pgjobs._sealed_frame(p_line text, p_mode text, p_entry text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether PG_CONTEXT line p_line is the frame PL/pgSQL prints when it
-- evaluates one of the engine's two sealed calls of client call p_entry
-- through SPI instead of its simple fast path: p_mode 'expression', the
-- entry point's call of its body
-- ('SQL expression "pgjobs._<entry>_as(current_user, p_...) AS sealed_call"'),
-- or 'assignment', the body's call of pgjobs._enter
-- ('PL/pgSQL assignment "p_caller := pgjobs._enter(''<entry>'', p_caller) AS sealed_call"'),
-- each in the language of lc_messages (pgjobs._spi_frame). PL/pgSQL takes
-- that path for the rest of the transaction once an error escaped the
-- expression (a failed call rolled back to a savepoint or caught by an
-- EXCEPTION block), and the frame then stands between two frames
-- pgjobs._enter and pgjobs._entered read.
--
-- This check alone refuses no forgery: a role's own statement (a DO block,
-- a function of its own) may be exactly this text, and the line then
-- passes. The refusal rests on the frame after it, which pgjobs._enter and
-- _entered require to be the entry point's own (resp. the body's); what
-- this check adds is that nothing else fits on the line.
--
-- Why a role cannot forge it: the line must be the whole of it. The text
-- is a statement's, and a role's own statement may begin with the same
-- text; but the line is cut at its first newline, so such a statement
-- either is that text (the next line is then the real frame of the code
-- that ran it, which pgjobs._enter and _entered still require to be the
-- entry point, resp. the body) or goes on, after the closing quote the
-- server prints, on a new line that must imitate that frame. The alias
-- sealed_call ends the text, so what follows it is read as SQL right after
-- a column alias: a quote opens an identifier or a literal there, and
-- letters a word; both are syntax errors (an imitated frame starts with a
-- word, 'PL/pgSQL function ...' in English). So the text after the
-- expression (the closing quote) may hold no letter, digit, comma, '_',
-- '-', '/', '*' or newline (a keyword, another column or a comment would go
-- on); a language whose quotes do is refused. Locks nothing.
DECLARE
    v_frame text[];
    v_text text;
BEGIN
    IF p_line IS NULL OR p_entry IS NULL OR p_entry !~ '^[a-z_]+$' THEN
        RETURN false;
    END IF;
    v_frame := pgjobs._spi_frame(p_mode);
    IF v_frame IS NULL OR v_frame[2] ~ '[[:alnum:],_/*\n-]'
       OR NOT starts_with(p_line, v_frame[1])
       OR length(p_line) <= length(v_frame[1]) + length(v_frame[2])
       OR right(p_line, length(v_frame[2])) <> v_frame[2] THEN
        RETURN false;
    END IF;
    v_text := substr(p_line, length(v_frame[1]) + 1,
                     length(p_line) - length(v_frame[1]) - length(v_frame[2]));
    IF p_mode = 'expression' THEN
        RETURN v_text ~ ('^pgjobs\._' || ltrim(p_entry, '_')
                         || '_as\(current_user(, p_[a-z_]+)*\) AS sealed_call$');
    END IF;
    RETURN v_text = format('p_caller := pgjobs._enter(%L, p_caller) AS sealed_call', p_entry);
END
$$;

COMMENT ON FUNCTION pgjobs._sealed_frame(text, text, text) IS
'Internal: whether a PG_CONTEXT line is the frame of the entry point''s call of its body '
'(p_mode expression) or of the body''s call of pgjobs._enter (assignment) for client call '
'p_entry, evaluated through SPI after an earlier error of the transaction.';
