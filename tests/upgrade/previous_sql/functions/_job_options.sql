CREATE OR REPLACE FUNCTION pgjobs._job_options(
    p_kind text,
    p_options jsonb,
    p_extra_options text[] DEFAULT '{}',
    OUT o_options jsonb,
    OUT o_priority integer,
    OUT o_max_attempts integer,
    OUT o_run_at timestamptz,
    OUT o_on_conflict text,
    OUT o_lease interval)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The options every job takes, checked (22023) and read: priority (at most
-- the administrator's max_client_priority for non-administrators),
-- max_attempts, run_at, on_conflict, lease; for writing kinds the
-- throttling ones too, with the administrator's defaults merged in
-- (pgjobs._throttle_options; o_options is p_options with them). Any other
-- key is refused unless listed in p_extra_options (kind-specific options,
-- which the caller checks). pgjobs._insert_job_row reads the job's options
-- here; a submit calls it first too, so that every option is checked
-- before the storage allow-list (42501), whatever the kind (h81). (No
-- DateStyle pinned: run_at is parsed in the caller's settings, as
-- pgjobs._insert_job_row did.) Locks nothing, writes nothing.
DECLARE
    v_allowed text[] := ARRAY['priority', 'max_attempts', 'run_at', 'on_conflict', 'lease']
                        || p_extra_options;
    v_key text;
    v_value jsonb;
    v_priority integer := 0;
    v_max_priority integer;
    v_max_attempts integer := 5;
    v_run_at timestamptz := now();
    v_on_conflict text := 'queue';
    v_lease interval := interval '30 seconds';
    v_writes boolean := pgjobs._writes(p_kind);
BEGIN
    IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for the defaults.';
    END IF;
    -- Writing kinds take the throttling options, defaults merged in.
    IF v_writes THEN
        p_options := pgjobs._throttle_options(p_options);
        -- ... never less strict than the defaults for a client (22023).
        PERFORM pgjobs._require_throttle_within(p_options);
        v_allowed := v_allowed || pgjobs._throttle_keys();
    END IF;

    FOR v_key, v_value IN SELECT o.key, o.value FROM jsonb_each(p_options) AS o LOOP
        IF NOT v_key = ANY (v_allowed) THEN
            RAISE EXCEPTION 'unknown option "%" for %', v_key, pgjobs._a_job(p_kind)
                USING ERRCODE = '22023',
                HINT = format('Valid options: %s.', array_to_string(v_allowed, ', '));
        END IF;
        CASE v_key
        WHEN 'priority' THEN
            v_priority := pgjobs._option_int(v_key, v_value, -1000000, 1000000);
        WHEN 'max_attempts' THEN
            v_max_attempts := pgjobs._option_int(v_key, v_value, 1, 1000);
        WHEN 'run_at' THEN
            BEGIN
                v_run_at := (v_value #>> '{}')::timestamptz;
            EXCEPTION WHEN OTHERS THEN
                v_run_at := NULL;
            END;
            -- Not 'infinity' nor '-infinity': the job would hold its scope's
            -- gate forever (or jump every queue), and every age computed from
            -- run_at (pgjobs.stats, doctor, the dashboard) raises 22008.
            IF jsonb_typeof(v_value) <> 'string' OR v_run_at IS NULL
               OR NOT isfinite(v_run_at) THEN
                RAISE EXCEPTION 'option "run_at" must be a finite timestamp, not %', v_value
                    USING ERRCODE = '22023',
                    HINT = 'Use an ISO 8601 string such as "2030-01-01T00:00:00Z"; '
                           'leave it out to run as soon as possible.';
            END IF;
        WHEN 'on_conflict' THEN
            IF v_value NOT IN ('"queue"'::jsonb, '"reject"'::jsonb) THEN
                RAISE EXCEPTION 'option "on_conflict" must be "queue" or "reject", not %', v_value
                    USING ERRCODE = '22023',
                    HINT = '"queue" waits behind the running writer; "reject" raises 55006.';
            END IF;
            v_on_conflict := v_value #>> '{}';
        WHEN 'lease' THEN
            BEGIN
                v_lease := (v_value #>> '{}')::interval;
            EXCEPTION WHEN OTHERS THEN
                v_lease := NULL;
            END;
            IF jsonb_typeof(v_value) <> 'string' OR v_lease IS NULL
               OR v_lease < interval '1 second' OR v_lease > interval '1 day'
               OR NOT pgjobs._interval_fixed(v_lease) THEN
                RAISE EXCEPTION 'option "lease" must be an interval from 1 second to 1 day, not %',
                    v_value USING ERRCODE = '22023',
                    HINT = 'For example "30 seconds"; in days, hours, minutes and seconds, '
                           'no months or years (their length depends on the date).';
            END IF;
        ELSE
            NULL;  -- a kind-specific option, checked by the caller
        END CASE;
    END LOOP;
    -- The administrator's ceiling (set_defaults' max_client_priority) for
    -- every submitter but administrators: a client's priority would
    -- otherwise keep every other tenant's jobs waiting. Checked on the
    -- priority the job gets, given or not: under a negative ceiling a job
    -- submitted without option "priority" would otherwise run at the
    -- default 0, above it.
    v_max_priority := (pgjobs._defaults() ->> 'max_client_priority')::integer;
    IF v_priority > v_max_priority
       AND NOT pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'option "priority" is %, above the ceiling of % an administrator '
                        'set for clients%', v_priority, v_max_priority,
                        CASE WHEN p_options ? 'priority' THEN ''
                             ELSE ' (the default, as the option was not given)' END
            USING ERRCODE = '22023',
            HINT = format('Submit with {"priority": %s} or lower; an administrator may '
                          'submit above it, or raise the ceiling with '
                          'pgjobs.set_defaults(''{"max_client_priority": N}'').',
                          v_max_priority);
    END IF;

    o_options := p_options;
    o_priority := v_priority;
    o_max_attempts := v_max_attempts;
    o_run_at := v_run_at;
    o_on_conflict := v_on_conflict;
    o_lease := v_lease;
END
$$;
