CREATE OR REPLACE FUNCTION pgjobs._entered()
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The entry point of the client call now running (setting pgjobs.entry,
-- which pgjobs._enter set), or NULL when no client call is running. Any
-- role may SET pgjobs.caller and pgjobs.entry itself, so the settings
-- alone prove nothing: they are honoured only while the call stack holds
-- the internal pgjobs._<entry>_as called by its entry point
-- pgjobs.<entry>, the two frames pgjobs._enter checked before it set them.
-- A value a client set (SET pgjobs.caller = 'postgres') outside such a
-- call, or one left from an earlier call of the transaction (each _as
-- internal's SET clauses restore both settings on return), is ignored.
-- The frame text is read as pgjobs._enter reads it (the text before the
-- name off line 1, translated by lc_messages). pgjobs._caller and
-- pgjobs._require_entry read the settings through it. Locks nothing.
DECLARE
    v_entry text := nullif(current_setting('pgjobs.entry', true), '');
    v_ctx text;
    v_lines text[];
    v_prefix text;
    v_internal text;
BEGIN
    IF v_entry IS NULL OR nullif(current_setting('pgjobs.caller', true), '') IS NULL THEN
        RETURN NULL;
    END IF;
    GET DIAGNOSTICS v_ctx = PG_CONTEXT;
    v_lines := string_to_array(v_ctx, E'\n');
    IF strpos(v_lines[1], 'pgjobs._entered(') = 0 THEN
        RETURN NULL;
    END IF;
    v_prefix := left(v_lines[1], strpos(v_lines[1], 'pgjobs._entered(') - 1);
    v_internal := v_prefix || 'pgjobs._' || ltrim(v_entry, '_') || '_as(';
    FOR i IN 2 .. cardinality(v_lines) - 1 LOOP
        IF starts_with(v_lines[i], v_internal)
           AND starts_with(v_lines[i + 1], v_prefix || 'pgjobs.' || v_entry || '(') THEN
            RETURN v_entry;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._entered() IS
'Internal: the entry point of the client call now running (setting pgjobs.entry), or NULL: the '
'settings pgjobs._enter set are honoured only while the call stack holds that entry and its '
'_as internal, never as a client or an earlier call left them.';
