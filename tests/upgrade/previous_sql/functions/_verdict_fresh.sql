CREATE OR REPLACE FUNCTION pgjobs._verdict_fresh(p_slot text, p_key text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether this session holds a passing verdict on p_key, reached as
-- current_user less than 1 s ago (pgjobs._verdict_keep wrote it into the
-- session setting pgjobs.verified_<p_slot>). The read path and export
-- chunks run on such a verdict instead of repeating checks that cost more
-- than the read itself (pgjobs._target_recent, pgjobs.export_chunk_sql):
-- the same 1 s window the runner's pages use (pgjobs._run_page), so a
-- change that makes a target untrusted or takes a submitter's privilege
-- away stops reads and chunks within 1 s, and at once in any other session.
-- The value is '<epoch seconds>/<seal>'; a value that is not well formed,
-- is dated in the future or 1 s or more ago, or whose seal
-- (pgjobs._verdict_mac) does not match this slot, key, role, backend and time is
-- no verdict: the caller checks in full. Locks nothing.
DECLARE
    v_value text := current_setting('pgjobs.verified_' || p_slot, true);
    v_now double precision := extract(epoch FROM clock_timestamp());
    v_at text;
    v_mac text;
BEGIN
    IF v_value IS NULL OR v_value !~ '^[0-9]{1,12}\.[0-9]{6}/[0-9a-f]{64}$' THEN
        RETURN false;
    END IF;
    v_at := split_part(v_value, '/', 1);
    IF NOT v_at::double precision BETWEEN v_now - 1.0 AND v_now THEN
        RETURN false;
    END IF;
    -- The slot is sealed with the key: slots check different things (the
    -- tenancy slot 'roles_<oid>' less than the read path's 'trusted_<oid>'),
    -- and a session can read and copy its own settings from one to another.
    -- pgjobs._verdict_mac's formula, written out as pgjobs._enter writes
    -- pgjobs._call_seal's: a call of it cost ~45 us of every short-way page
    -- (its five SET clauses), more than its hashes. Every read that
    -- counts on a verdict fails to if the two differ
    -- (tests/test_read_verdicts.py checks this one against _verdict_mac).
    IF has_table_privilege('pgjobs.settings', 'SELECT') THEN
        SELECT encode(sha256(convert_to('pgjobs verdict:' || (st.value #>> '{}') || ':'
                   || encode(sha256(convert_to(jsonb_build_array(
                          'pgjobs verdict', st.value #>> '{}',
                          jsonb_build_array(p_slot, p_key)::text, current_user,
                          pg_backend_pid(), v_at)::text, 'UTF8')), 'hex'),
                   'UTF8')), 'hex')
          INTO v_mac
          FROM pgjobs.settings st WHERE st.key = 'channel_secret';
    END IF;
    -- Compared as hashes: the time a comparison takes says nothing of the seal.
    RETURN v_mac IS NOT NULL
       AND sha256(convert_to(v_mac, 'UTF8')) = sha256(convert_to(split_part(v_value, '/', 2), 'UTF8'));
END
$$;
