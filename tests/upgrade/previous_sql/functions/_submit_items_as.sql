CREATE OR REPLACE FUNCTION pgjobs._submit_items_as(
    p_caller name,
    p_kind text,
    p_target regclass,
    p_scope text,
    p_items jsonb,
    p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SECURITY DEFINER
AS $$
-- The body of pgjobs.submit_items, run as pgjobs' owner for the role
-- p_caller (the current_user of pgjobs.submit_items, its only permitted
-- caller: pgjobs._enter, 42501 otherwise); every check is of p_caller.
-- The parent is written by pgjobs._insert_job_row (common options, scope
-- canonicalised, allowed_scopes) with the kind-specific option concurrency,
-- then marked fanout; the items by pgjobs._items_add; only then is the job
-- announced (event submitted), so the event carries its total.
-- Kinds pgjobs runs itself (delete, backfill, export, import) are refused
-- (22023): their work is rows of the target, not items. Everything is
-- checked before anything is written. Returns the parent's id.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('submit_items', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    IF p_kind IS NULL OR p_kind !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid job kind %', coalesce(quote_literal(p_kind), 'NULL')
            USING ERRCODE = '22023',
            HINT = 'A kind is lower-case letters, digits and underscores, starting with a letter.';
    END IF;
    IF pgjobs._builtin_kind(p_kind) OR pgjobs._writes(p_kind) THEN  -- no gate for items
        RAISE EXCEPTION '% cannot be a fan-out job', pgjobs._a_job(p_kind)
            USING ERRCODE = '22023',
            HINT = format('Submit it with pgjobs.submit_%s(); fan-out jobs have a kind of '
                          'your own, e.g. ''thumbnail''.', p_kind);
    END IF;
    PERFORM pgjobs._items_array(p_items, true);  -- 22023: not a non-empty array
    IF p_options IS NOT NULL AND jsonb_typeof(p_options) = 'object'
       AND p_options ? 'concurrency' THEN
        PERFORM pgjobs._option_int('concurrency', p_options -> 'concurrency', 1, 1000000);
    END IF;
    PERFORM pgjobs._require(p_target, pgjobs._kind_privilege(p_kind));
    v_job := pgjobs._insert_job_row(p_kind, p_target, p_scope, '{}'::jsonb, p_options,
                                    ARRAY['concurrency']);
    UPDATE pgjobs.jobs SET fanout = true, total = 0 WHERE id = v_job.id;
    PERFORM pgjobs._items_add(v_job.id, p_items, true);
    SELECT * INTO STRICT v_job FROM pgjobs.jobs WHERE id = v_job.id;
    PERFORM pgjobs._notify(v_job, 'submitted');
    RETURN pgjobs._leave(v_job.id);
END
$$;
