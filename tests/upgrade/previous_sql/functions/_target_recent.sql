-- The signature before the running call could be passed in (the stop-48
-- release's): dropped so that no install keeps both.
DROP FUNCTION IF EXISTS pgjobs._target_recent(regclass, boolean);

CREATE OR REPLACE FUNCTION pgjobs._target_recent(p_target regclass,
                                                 p_keep boolean DEFAULT true,
                                                 p_call text[] DEFAULT NULL)
RETURNS pgjobs.target_registry
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs._target for the hot read paths (visible, visible_count, mask,
-- compile_filter, export chunks): the same registration and the same
-- errors, but the trust verdict (pgjobs._require_trusted, 0.7-1.5 ms: more
-- than a 100-row page) is taken from this session when it reached it as
-- current_user less than 1 s ago (pgjobs._verdict_fresh), and kept after a
-- full check (pgjobs._verdict_keep) unless p_keep is false: the filter
-- compiler uses a read's verdict but starts none, so a submit (which
-- checks in full through pgjobs._target) opens no window. Registration
-- itself is read every time: an unregistered target is refused at once. A change that makes the
-- target untrusted (owner, TRIGGER grant, a function, operator or type its
-- code uses, role membership, row-level security on pgjobs' role) is seen
-- by this session's reads within 1 s, by any other session at once; the
-- runner's pages use the same window. Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_at double precision := extract(epoch FROM clock_timestamp());
BEGIN
    -- A client caller lacking a privilege its call needs gets pgjobs._target's
    -- error before the registry is read, the same as for a table never
    -- registered (pgjobs._require_entry; nothing to check outside a client call).
    -- p_call: the running call, ARRAY[entry, caller], from the internal that
    -- has just had it from pgjobs._enter (pgjobs._require_entry); NULL: read it.
    PERFORM pgjobs._require_entry(p_target, NULL, p_call);
    IF p_target IS NOT NULL
       AND pgjobs._verdict_fresh('trusted_' || p_target::oid::text, p_target::oid::text) THEN
        SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
        IF FOUND THEN
            RETURN v_reg;
        END IF;
    END IF;
    v_reg := pgjobs._target(p_target);  -- 22023, 42501: the full check
    IF p_keep THEN
        PERFORM pgjobs._verdict_keep('trusted_' || p_target::oid::text, p_target::oid::text, v_at);
    END IF;
    RETURN v_reg;
END
$$;
