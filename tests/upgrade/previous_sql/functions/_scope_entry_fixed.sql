CREATE OR REPLACE FUNCTION pgjobs._scope_entry_fixed(p_reg pgjobs.target_registry, p_entry text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether entry p_entry of pgjobs.allowed_scopes names one scope of p_reg
-- in every session. A scope is parsed in the caller's session
-- (pgjobs._canonical_scope), and so is the list: for a scope column of a
-- date, time, timestamp or interval type, an entry without its offset
-- ('2030-01-02 00:00' of a timestamptz), in a DMY / MDY spelling
-- ('01/02/2030') or relative ('today') names the tenant the session's
-- TimeZone, DateStyle or IntervalStyle picks, and a request that may set
-- its own (PostgREST's `Prefer: timezone`) could pick another tenant's.
-- Such an entry names a tenant nowhere: false. The entry is parsed under
-- settings far apart (UTC, YMD, postgres; UTC+14, DMY, sql_standard;
-- UTC-12, MDY: set_config is local to this call, which the SET clauses
-- restore) and must give one canonical scope. True for any other scope type, without a parse;
-- false for a value that is not a scope of p_reg, and for a time-typed scope
-- of an untrusted target (pgjobs._untrusted_roles), which is not cast.
-- Locks nothing.
DECLARE
    v_type oid;
    v_near text;
    v_far text;
BEGIN
    SELECT a.atttypid INTO v_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attname = p_reg.scope_column AND a.attnum > 0
       AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RETURN false;  -- the scope column is gone: no scope is a value of it
    END IF;
    v_type := pgjobs._base_type(v_type);  -- a domain to its base type
    IF v_type NOT IN ('date'::regtype, 'time'::regtype, 'timetz'::regtype,
                      'timestamp'::regtype, 'timestamptz'::regtype, 'interval'::regtype) THEN
        RETURN true;
    END IF;
    -- Casting runs the scope type's code (a domain's CHECK) as the caller,
    -- pgjobs' owner in pgjobs._scope_allowed: only for a trusted target.
    IF EXISTS (SELECT 1 FROM pgjobs._reach_roles(p_reg.target) r WHERE r.lacks_rights) THEN
        RETURN false;
    END IF;
    BEGIN
        v_near := pgjobs._canonical_scope(p_reg, p_entry);
        PERFORM set_config('TimeZone', 'Etc/GMT-14', true);
        PERFORM set_config('DateStyle', 'ISO, DMY', true);
        PERFORM set_config('IntervalStyle', 'sql_standard', true);
        v_far := pgjobs._canonical_scope(p_reg, p_entry);
        IF v_far = v_near THEN
            PERFORM set_config('TimeZone', 'Etc/GMT+12', true);
            PERFORM set_config('DateStyle', 'ISO, MDY', true);
            v_far := pgjobs._canonical_scope(p_reg, p_entry);
        END IF;
    EXCEPTION WHEN invalid_parameter_value OR undefined_column THEN
        RETURN false;
    END;
    RETURN v_near = v_far;
END
$$;
