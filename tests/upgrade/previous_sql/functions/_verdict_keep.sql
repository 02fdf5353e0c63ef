CREATE OR REPLACE FUNCTION pgjobs._verdict_keep(p_slot text, p_key text,
                                                p_at double precision)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Keeps a passing verdict on p_key, reached as current_user by a check
-- that started at p_at (epoch seconds: the window counts from the start of
-- the check, never from its end, and from its snapshot's when older), in
-- the session setting pgjobs.verified_<p_slot>, sealed (pgjobs._verdict_mac) so that only
-- pgjobs can write one pgjobs._verdict_fresh accepts. Session-level, not
-- transaction-local, so the next read's transaction can use it; a rollback
-- of this transaction discards it. One value per slot: a new verdict
-- replaces the slot's last. Keeps nothing when current_user may not read
-- the secret. Locks nothing.
DECLARE
    -- The check read the catalogs through a snapshot that may be older than
    -- p_at: the statement's in READ COMMITTED (a STABLE caller sees what its
    -- statement saw when it started), the transaction's in REPEATABLE READ
    -- and SERIALIZABLE (a session could hold a snapshot from before a
    -- change, check once more and commit). Each snapshot is taken no earlier
    -- than that statement's or transaction's start, so the window counts
    -- from there when that is earlier: never from after what the check saw.
    v_at text := round(least(p_at, extract(epoch FROM CASE
                     WHEN current_setting('transaction_isolation') = 'read committed'
                     THEN statement_timestamp() ELSE transaction_timestamp() END))::numeric,
                     6)::text;
    -- Sealed with its slot (pgjobs._verdict_fresh checks the same pair).
    v_mac text := pgjobs._verdict_mac(jsonb_build_array(p_slot, p_key)::text, v_at);
BEGIN
    IF v_mac IS NOT NULL THEN
        PERFORM set_config('pgjobs.verified_' || p_slot, v_at || '/' || v_mac, false);
    END IF;
END
$$;
