CREATE OR REPLACE FUNCTION pgjobs._require_throttle_within(p_options jsonb)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A client's writing job may throttle itself more than the defaults in
-- force (pgjobs._defaults: the built-in ones and what an administrator
-- stored with pgjobs.set_defaults), never less. p_options are the job's
-- options as pgjobs._throttle_options validated them (integers in integer
-- form). For a submitter who is not an administrator (pgjobs_admin member,
-- superuser), each throttling option the defaults limit must be
--   max_rows_per_second, max_replica_lag_bytes, max_wal_rate: from 1 to the
--     default (0 would turn the limit off),
--   max_xact_age: above 0 and at most the default,
--   page_delay: at least the default,
--   pause_on_autovacuum: true when the default is true,
-- else 22023 naming the option and the default, with a hint. Why: these
-- limits protect every tenant (a standby's lag, the WAL volume, vacuum);
-- a client's {"max_replica_lag_bytes": 0} turned off the 256 MB limit for
-- its own job, and any client could outrun the limits an administrator set.
-- Called by pgjobs._insert_job_row, which every writing submit passes.
-- Locks nothing.
DECLARE
    v_defaults jsonb := pgjobs._defaults();
    v_key text;
    v_given jsonb;
    v_default jsonb;
    v_looser boolean;
BEGIN
    IF pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    FOREACH v_key IN ARRAY pgjobs._throttle_keys() LOOP
        v_given := p_options -> v_key;
        v_default := v_defaults -> v_key;
        CONTINUE WHEN v_given IS NULL OR v_default IS NULL
                      OR jsonb_typeof(v_default) = 'null';
        v_looser := CASE v_key
            WHEN 'pause_on_autovacuum' THEN
                v_default = 'true'::jsonb AND v_given <> 'true'::jsonb
            WHEN 'page_delay' THEN
                (v_given #>> '{}')::interval < (v_default #>> '{}')::interval
            WHEN 'max_xact_age' THEN
                (v_default #>> '{}')::interval > interval '0'
                AND ((v_given #>> '{}')::interval = interval '0'
                     OR (v_given #>> '{}')::interval > (v_default #>> '{}')::interval)
            ELSE
                (v_default #>> '{}')::numeric > 0
                AND ((v_given #>> '{}')::numeric = 0
                     OR (v_given #>> '{}')::numeric > (v_default #>> '{}')::numeric)
            END;
        IF v_looser THEN
            RAISE EXCEPTION 'option "%" is %, less strict than the default % in force',
                            v_key, v_given, v_default
                USING ERRCODE = '22023',
                HINT = format('Leave "%s" out to run with the default, or ask for a stricter '
                              'value; only an administrator may loosen it, for every job with '
                              'pgjobs.set_defaults(''{"%s": ...}'') or for one job by '
                              'submitting it.', v_key, v_key);
        END IF;
    END LOOP;
END
$$;
