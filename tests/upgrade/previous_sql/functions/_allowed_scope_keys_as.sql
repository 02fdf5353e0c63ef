CREATE OR REPLACE FUNCTION pgjobs._allowed_scope_keys_as(p_caller name)
RETURNS text[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs._allowed_scope_keys, run as pgjobs' owner for
-- p_caller (its only permitted caller: pgjobs._enter, 42501 otherwise).
-- The jobs a session with pgjobs.allowed_scopes set may see, as keys
-- '<target oid>:<scope>' to compare with each job row's: for every
-- registered target that p_caller may SELECT (on the table or on every
-- one of its columns, pgjobs._reads_every_column, asked only where the
-- table grant is missing) or has submitted jobs on (pgjobs._jobs_shown_on) (the only targets whose jobs policy jobs_client_read can show it: a key for
-- any other target would only tell it that pgjobs knows that table), and
-- every entry of the setting that is a value of its scope column, the
-- entry's canonical text (pgjobs._canonical_scope, the form in which every
-- submit stores a registered target's scope). Entries that are not values
-- of a target's scope column allow nothing there; an untrusted target
-- (pgjobs._untrusted_roles: casting would run its types' code as pgjobs)
-- gets no keys, its jobs compare as text only (policy jobs_client_read's
-- verbatim test), as in pgjobs._scope_allowed, the per-scope form of the
-- same rule. Empty when the setting is unset or empty. The trust verdict
-- is taken from this session when under 1 s old (pgjobs._verdict_fresh),
-- the read path's window. The submitted-jobs test (by the submitter's
-- oid, pgjobs._has_jobs_on) is two index probes per registered target the
-- caller may not SELECT, only in a session with allowed_scopes set.
-- Locks nothing.
DECLARE
    v_entries text[] := pgjobs._allowed_scope_entries();
    v_entry text;
    v_scope text;
    v_reg pgjobs.target_registry;
    v_keys text[] := '{}'::text[];
    v_at double precision;
    v_slot text;
BEGIN
    p_caller := pgjobs._enter('_allowed_scope_keys', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    IF v_entries IS NULL THEN
        RETURN pgjobs._leave(v_keys);
    END IF;
    FOR v_reg IN SELECT r.* FROM pgjobs.target_registry r ORDER BY r.target LOOP
        CONTINUE WHEN NOT pgjobs._jobs_shown_on(p_caller, v_reg.target);
        -- Its own slot: this verdict is the reach's roles' alone (the read
        -- path's, 'trusted_', also covers row security on pgjobs' role).
        v_slot := 'roles_' || v_reg.target::oid::text;
        IF NOT pgjobs._verdict_fresh(v_slot, v_reg.target::oid::text) THEN
            v_at := extract(epoch FROM clock_timestamp());
            CONTINUE WHEN EXISTS (SELECT 1 FROM pgjobs._reach_roles(v_reg.target) r
                                   WHERE r.lacks_rights);
            PERFORM pgjobs._verdict_keep(v_slot, v_reg.target::oid::text, v_at);
        END IF;
        FOREACH v_entry IN ARRAY v_entries LOOP
            v_scope := pgjobs._scope_entry(v_reg, v_entry);
            IF v_scope IS NOT NULL THEN  -- else not a value of the column: allows nothing
                v_keys := v_keys || (v_reg.target::oid::text || ':' || v_scope);
            END IF;
        END LOOP;
    END LOOP;
    RETURN pgjobs._leave(v_keys);
END
$$;
