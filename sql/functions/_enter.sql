CREATE OR REPLACE FUNCTION pgjobs._enter(p_entry text, p_caller name)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The door of every SECURITY DEFINER internal pgjobs._<p_entry>_as: it
-- returns p_caller, the role the call acts for, only when that internal
-- was called by its own client entry point pgjobs.<p_entry>, a SECURITY
-- INVOKER function that passes its current_user (the one role PostgreSQL
-- itself says the code runs as: the owner of a SECURITY DEFINER function,
-- the table owner in a maintenance command, the SET ROLE role). Anything
-- else (a client naming another role, code of any schema calling the
-- internal) is refused with 42501. An entry point whose own name starts
-- with '_' (the SECURITY INVOKER helpers that policy jobs_client_read and
-- view pgjobs.targets call as the client: pgjobs._confined_targets, ...)
-- has its body named with one leading '_' (pgjobs._confined_targets_as).
-- Then pgjobs._caller() returns p_caller, and pgjobs._entered() names
-- p_entry, for the rest of the internal's call: the transaction-local
-- setting pgjobs.call_<depth> ('<p_entry>/<p_caller>/<seal>', the seal
-- pgjobs._call_seal's, which needs the engine's secret; depth = the number
-- of PG_CONTEXT lines from the bottom of the stack up to the internal's)
-- keeps them, counted only while the internal is on the stack at that
-- depth (pgjobs._entered), and cleared when it returns (every internal
-- returns through pgjobs._leave). Not a function SET clause: SET clauses on
-- a placeholder setting need the SET privilege on it, which PostgreSQL 15
-- grants only to superusers, so pgjobs migrate by a database owner failed.
--
-- The check reads the call stack (pgjobs._stack, in any language of
-- lc_messages): element 1 is this function, element 2 the internal (it
-- calls this in an assignment: no SQL statement line), element 3 must be
-- the entry point's own PL/pgSQL frame (it calls the internal in a plain
-- expression). After an error escaped either call earlier in the
-- transaction, PL/pgSQL makes that call through SPI from then on, and the
-- one line SPI prints for it stands before element 2 or 3: let in only
-- when the whole line is that call's (pgjobs._sealed_frame; both calls end
-- in the alias sealed_call for it). PL/pgSQL prints a function's name as
-- compiled under the
-- pinned search_path, so schema-qualified; a role cannot create functions
-- in schema pgjobs, and no other frame's signature starts with
-- 'pgjobs.' (a name a role chooses is printed in double quotes). Locks
-- nothing.
DECLARE
    v_stack text[];
    v_ctx text;
    v_lines text[];
    v_at integer;
    v_prefix text;
    v_internal text := '_' || ltrim(p_entry, '_') || '_as(';
    v_seal text;
    v_body_at integer := 2;
    v_entry_at integer := 3;
BEGIN
    -- The frames, as pgjobs._stack reads them (its signature first, the
    -- rest of the line after it). Most languages print the same text before
    -- every frame's name: there the frames are the lines that start with
    -- line 1's text before this function's name, read here at a fraction of
    -- a call of pgjobs._stack (this runs a few times in every client call:
    -- with its five SET clauses, each call of _stack cost ~50 us, and client
    -- reads 2x). A language whose frame line puts the statement and the
    -- line number before the name (zh_CN) needs _stack's template.
    GET DIAGNOSTICS v_ctx = PG_CONTEXT;
    v_lines := string_to_array(v_ctx, E'\n');
    v_at := strpos(v_lines[1], 'pgjobs._enter(');
    v_prefix := left(v_lines[1], v_at - 1);
    IF v_at = 0 OR v_prefix ~ '[0-9]' THEN
        v_stack := pgjobs._stack();  -- an assignment: a frame "at" a statement
    ELSE
        v_stack := ARRAY[]::text[];
        FOR i IN 1 .. cardinality(v_lines) LOOP
            v_stack[i] := CASE WHEN starts_with(v_lines[i], v_prefix)
                               THEN substr(v_lines[i], length(v_prefix) + 1) END;
        END LOOP;
    END IF;
    IF p_caller IS NULL OR p_entry IS NULL OR coalesce(cardinality(v_stack), 0) < 3
       OR NOT coalesce(starts_with(v_stack[1], 'pgjobs._enter('), false)
       OR NOT coalesce(starts_with(v_stack[2], 'pgjobs.' || v_internal), false)
       OR NOT coalesce(starts_with(v_stack[3], 'pgjobs.' || p_entry || '('), false) THEN
        -- Not the plain stack. After an error escaped one of the two calls
        -- earlier in the transaction (a savepoint rolled back, an EXCEPTION
        -- block), PL/pgSQL evaluates it through SPI, whose frame then stands
        -- before the body's (the body's call of this function) or before the
        -- entry point's (the entry point's call of the body): that exact
        -- frame, and nothing else, is let in there, where the frames were
        -- read at the prefix (pgjobs._sealed_frame says why a role cannot
        -- write it). The plain path above costs what it did.
        IF v_at > 0 AND v_prefix !~ '[0-9]' THEN
            IF pgjobs._sealed_frame(v_lines[2], 'assignment', p_entry) THEN
                v_body_at := 3;
            END IF;
            v_entry_at := v_body_at + 1;
            IF NOT coalesce(starts_with(v_stack[v_entry_at], 'pgjobs.' || p_entry || '('), false)
               AND pgjobs._sealed_frame(v_lines[v_entry_at], 'expression', p_entry) THEN
                v_entry_at := v_entry_at + 1;
            END IF;
        END IF;
        IF v_entry_at = 3 OR p_caller IS NULL OR p_entry IS NULL
           OR coalesce(cardinality(v_stack), 0) < v_entry_at
           OR NOT coalesce(starts_with(v_stack[1], 'pgjobs._enter('), false)
           OR NOT coalesce(starts_with(v_stack[v_body_at], 'pgjobs.' || v_internal), false)
           OR NOT coalesce(starts_with(v_stack[v_entry_at], 'pgjobs.' || p_entry || '('), false) THEN
            RAISE EXCEPTION 'permission denied: pgjobs.%_as may only be called by pgjobs.%',
                '_' || ltrim(p_entry, '_'), p_entry
                USING ERRCODE = '42501',
                HINT = format('Call pgjobs.%s, not pgjobs.%s_as: it acts for the role that calls it.',
                              p_entry, '_' || ltrim(p_entry, '_'));
        END IF;
    END IF;
    -- element v_body_at is the internal: its depth counts from the bottom
    -- sealed: only this function can write a slot that pgjobs._entered
    -- honours. pgjobs._call_seal's formula, written out as _entered writes
    -- it: a call of it cost ~20-40 us of every client call (its SET
    -- clauses). Every client call fails if this and _entered's differ;
    -- tests/test_trust_stack_forgery.py checks this one against
    -- pgjobs._call_seal itself.
    IF has_table_privilege('pgjobs.settings', 'SELECT') THEN
        SELECT encode(sha256(convert_to('pgjobs call:' || (st.value #>> '{}') || ':'
                   || encode(sha256(convert_to(jsonb_build_array(
                          'pgjobs call', st.value #>> '{}', cardinality(v_stack) - v_body_at + 1, p_entry,
                          p_caller, current_user, pg_backend_pid())::text, 'UTF8')), 'hex'),
                   'UTF8')), 'hex')
          INTO v_seal
          FROM pgjobs.settings st WHERE st.key = 'channel_secret';
    END IF;
    PERFORM set_config('pgjobs.call_' || (cardinality(v_stack) - v_body_at + 1),
                       p_entry || '/' || p_caller || '/' || v_seal,
                       true);  -- pgjobs._entered
    RETURN p_caller;
END
$$;
