CREATE OR REPLACE FUNCTION pgjobs._require_scope(p_scope text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Tenancy: when the session setting pgjobs.allowed_scopes is set (a
-- comma-separated list; unset or empty means no restriction), a client
-- function may only act on those scopes. Called by every submit (through
-- pgjobs._insert_job), by cancel with the job's scope, and by the read path
-- (mask, visible, visible_count). Entries are trimmed and compared with
-- the scope as text, exactly as policy jobs_client_scopes on pgjobs.jobs
-- does (migration 0004). Raises 42501 with a hint. Locks nothing.
DECLARE
    v_setting text := btrim(coalesce(current_setting('pgjobs.allowed_scopes', true), ''));
BEGIN
    IF v_setting = '' THEN
        RETURN;
    END IF;
    IF p_scope IS NULL OR NOT p_scope = ANY (regexp_split_to_array(v_setting, '\s*,\s*')) THEN
        RAISE EXCEPTION 'permission denied: scope % is not in pgjobs.allowed_scopes',
            coalesce(quote_literal(left(p_scope, 200)), 'NULL')
            USING ERRCODE = '42501',
            HINT = 'This session may only act on the scopes listed in the pgjobs.allowed_scopes '
                   'setting, which the application sets per request.';
    END IF;
END
$$;
