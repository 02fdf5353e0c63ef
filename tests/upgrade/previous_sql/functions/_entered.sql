CREATE OR REPLACE FUNCTION pgjobs._entered()
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The client call now running, as ARRAY[entry, caller, depth], or NULL
-- when no client call is running. pgjobs._enter keeps each call in a
-- setting named by its depth on the call stack (pgjobs.call_<depth>:
-- '<entry>/<caller>/<seal>', depth = the number of PG_CONTEXT lines from the
-- bottom of the stack up to the internal pgjobs._<entry>_as). The innermost
-- frame pair on the stack that is an internal pgjobs._<x>_as called by its
-- entry point pgjobs.<x> decides: honoured only when the setting at that
-- frame's depth names that entry, which _enter set when the frame began
-- (a nested client call keeps its own depth, so the outer call's setting
-- is intact when it returns; between the two may stand the one SPI line
-- pgjobs._enter lets in there, pgjobs._sealed_frame). Any role may set
-- pgjobs.* settings itself,
-- so a setting alone proves nothing: it counts only with the seal _enter
-- made (pgjobs._call_seal, keyed with the engine's secret) for that depth,
-- entry and caller, and only while a live _as frame stands at its depth: a
-- value a role set itself names no one, even under PG_CONTEXT lines its
-- own text imitates frames with; one left by an earlier call of the
-- transaction or session was cleared (pgjobs._leave) or overwritten.
-- Such a frame pair with no matching setting (code that ran inside the
-- call changed it) is refused (42501) rather than read as "no call",
-- which would let the internal's SECURITY DEFINER rights pass for the
-- caller's. The frames are read as pgjobs._enter reads them
-- (pgjobs._stack, in any language of lc_messages).
-- pgjobs._caller and pgjobs._require_entry read it (pgjobs._leave where it
-- cannot read its body on line 2 itself).
-- Locks nothing.
DECLARE
    v_stack text[];
    v_ctx text;
    v_lines text[];
    v_at integer;
    v_prefix text;
    v_n integer;
    v_body text;
    v_slot text;
    v_entry text;
    v_seal text;
    v_next integer;
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
    v_at := strpos(v_lines[1], 'pgjobs._entered(');
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
    v_n := coalesce(cardinality(v_stack), 0);
    IF NOT coalesce(starts_with(v_stack[1], 'pgjobs._entered('), false) THEN
        RETURN NULL;
    END IF;
    FOR i IN 2 .. v_n - 1 LOOP
        v_body := substring(v_stack[i] FROM '^pgjobs\._([a-z_]+)_as\(');
        CONTINUE WHEN v_body IS NULL;
        v_next := i + 1;  -- the entry point's frame
        IF NOT coalesce(starts_with(v_stack[v_next], 'pgjobs.' || v_body || '(')
                        OR starts_with(v_stack[v_next], 'pgjobs._' || v_body || '('), false) THEN
            -- the entry point's call of the body evaluated through SPI after
            -- an earlier error of the transaction: its exact frame, as
            -- pgjobs._enter lets it in (frames read at the prefix only)
            CONTINUE WHEN v_at = 0 OR v_prefix ~ '[0-9]'
                OR NOT pgjobs._sealed_frame(v_lines[v_next], 'expression', v_body);
            v_next := i + 2;
            CONTINUE WHEN NOT coalesce(starts_with(v_stack[v_next], 'pgjobs.' || v_body || '(')
                                       OR starts_with(v_stack[v_next], 'pgjobs._' || v_body || '('),
                                       false);
        END IF;
        -- '<entry>/<caller>/<seal>': honoured only with the seal pgjobs._enter
        -- made for this depth, entry and caller (pgjobs._call_seal). The frames
        -- are text, and text a role wrote (an SQL statement, a quoted name) can
        -- hold lines that imitate a body and its entry point; the seal cannot
        -- be made without the engine's secret, so such lines over a slot a
        -- role set itself are refused as a changed setting is.
        v_slot := current_setting('pgjobs.call_' || (v_n - i + 1), true);
        v_seal := right(v_slot, 64);
        v_slot := left(v_slot, -65);
        v_entry := nullif(split_part(v_slot, '/', 1), '');
        IF v_entry IS NULL OR ltrim(v_entry, '_') <> v_body
           OR NOT coalesce(starts_with(v_stack[v_next], 'pgjobs.' || v_entry || '('), false)
           OR length(v_slot) <= length(v_entry) + 1 THEN
            v_seal := NULL;
        ELSIF has_table_privilege('pgjobs.settings', 'SELECT') THEN
            -- pgjobs._call_seal's formula, written out: a call of it costs
            -- ~15 us more (its SET clauses), and this runs a few times in
            -- every client call. Every client call fails if the two differ.
            SELECT CASE WHEN encode(sha256(convert_to('pgjobs call:' || (st.value #>> '{}') || ':'
                       || encode(sha256(convert_to(jsonb_build_array(
                              'pgjobs call', st.value #>> '{}', v_n - i + 1, v_entry,
                              substr(v_slot, length(v_entry) + 2), current_user,
                              pg_backend_pid())::text, 'UTF8')), 'hex'), 'UTF8')), 'hex')
                       = v_seal THEN v_seal END
              INTO v_seal
              FROM pgjobs.settings st WHERE st.key = 'channel_secret';
        ELSE
            v_seal := NULL;
        END IF;
        IF v_seal IS NULL THEN
            RAISE EXCEPTION 'permission denied: the setting of the running call to pgjobs.% was changed',
                            coalesce(v_entry, v_body)
                USING ERRCODE = '42501',
                      HINT = 'pgjobs.call_* settings belong to the engine: do not set them, '
                             'and call the pgjobs entry point again.';
        END IF;
        RETURN ARRAY[v_entry, substr(v_slot, length(v_entry) + 2), (v_n - i + 1)::text];
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._entered() IS
'Internal: the client call now running as ARRAY[entry, caller, depth], or NULL: the setting '
'pgjobs._enter keeps for a call counts only while that call''s _as frame is on the stack at '
'its depth, never as a client or an earlier call left it.';
