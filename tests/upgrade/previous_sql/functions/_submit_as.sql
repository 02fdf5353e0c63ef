CREATE OR REPLACE FUNCTION pgjobs._submit_as(
    p_caller name,
    p_kind text,
    p_target regclass,
    p_scope text,
    p_payload jsonb,
    p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.submit, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.submit, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Submits a job of any kind that external workers (any language) run
-- through claim/heartbeat/complete/fail. The kinds pgjobs runs itself
-- (pgjobs._builtin_kind: delete, backfill, export, import) have their own
-- functions, which validate their payload: 22023 here. SECURITY DEFINER for
-- pgjobs_client; the caller needs pgjobs._kind_privilege(p_kind) on the
-- target: UPDATE for any custom kind (42501).
-- Returns the job id.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('submit', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    IF p_kind IS NULL OR p_kind !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid job kind %', coalesce(quote_literal(p_kind), 'NULL')
            USING ERRCODE = '22023',
            HINT = 'A kind is lower-case letters, digits and underscores, starting with a letter.';
    END IF;
    IF pgjobs._builtin_kind(p_kind) THEN
        RAISE EXCEPTION 'submit % with pgjobs.submit_%()', pgjobs._a_job(p_kind), p_kind
            USING ERRCODE = '22023',
            HINT = format('pgjobs.submit_%s validates the %s and the %s options.',
                          p_kind, CASE p_kind WHEN 'import' THEN 'source'
                                              WHEN 'backfill' THEN 'filter, the set'
                                              ELSE 'filter' END, p_kind);
    END IF;
    PERFORM pgjobs._require(p_target, pgjobs._kind_privilege(p_kind));
    v_job := pgjobs._insert_job(p_kind, p_target, p_scope, p_payload, p_options);
    RETURN pgjobs._leave(v_job.id);
END
$$;
