-- pgjobs 0008: scope identity. pgjobs._require_scope takes the target, so
-- that allowed_scopes entries compare as canonical scopes of its scope
-- column (pgjobs._scope_allowed); the one-argument version goes.
-- depends: 0004.tenancy

DROP FUNCTION IF EXISTS pgjobs._require_scope(text);

-- Jobs queued or running across the upgrade were stored with the scope as
-- the client spelled it ('01'); the mask, the gate and on_conflict now
-- compare canonical scopes, so bring theirs to the canonical form (the one
-- pgjobs._canonical_text prints; inline here: a migration calls no pgjobs
-- function). A scope that no longer casts is left as it is.
DO $migrate$
DECLARE
    v_job record;
    v_type text;
    v_base regtype;
    v_text text;
BEGIN
    PERFORM pg_catalog.set_config('TimeZone', 'UTC', true);
    PERFORM pg_catalog.set_config('DateStyle', 'ISO, YMD', true);
    PERFORM pg_catalog.set_config('IntervalStyle', 'postgres', true);
    PERFORM pg_catalog.set_config('extra_float_digits', '3', true);
    FOR v_job IN
        SELECT j.id, j.scope, j.target, r.scope_column
          FROM pgjobs.jobs j
          JOIN pgjobs.target_registry r ON r.target = j.target
         WHERE j.status IN ('queued', 'running')
    LOOP
        SELECT pg_catalog.format_type(a.atttypid, a.atttypmod),
               CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END::regtype
          INTO v_type, v_base
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = v_job.target AND a.attname = v_job.scope_column
           AND NOT a.attisdropped;
        CONTINUE WHEN v_type IS NULL;
        BEGIN
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.to_jsonb(%L::%s) OPERATOR(pg_catalog.#>>) ''{}''',
                v_job.scope, v_type)
               INTO v_text;
        EXCEPTION WHEN data_exception THEN
            CONTINUE;
        END;
        IF v_base = 'numeric'::regtype AND v_text NOT IN ('NaN', 'Infinity', '-Infinity') THEN
            v_text := pg_catalog.trim_scale(v_text::numeric)::text;
        ELSIF v_base IN ('real'::regtype, 'double precision'::regtype) AND v_text = '-0' THEN
            v_text := '0';
        ELSIF v_base = 'interval'::regtype THEN
            v_text := pg_catalog.justify_interval(v_text::interval)::text;
        ELSIF v_base = 'character'::regtype THEN
            v_text := pg_catalog.rtrim(v_text, ' ');
        END IF;
        IF v_text IS DISTINCT FROM v_job.scope THEN
            UPDATE pgjobs.jobs SET scope = v_text WHERE id = v_job.id;
        END IF;
    END LOOP;
END
$migrate$;
