CREATE OR REPLACE FUNCTION pgjobs._target(p_target regclass)
RETURNS pgjobs.target_registry
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The registration of p_target, for every function that takes a target or
-- touches its rows or types: compile_filter, the submits, mask, visible,
-- visible_count, export_chunk_sql, the runner's pages (whose full check
-- makes the same two checks, the second as pgjobs._trust_verdict). Raises
-- what pgjobs._target_registration raises (22023 when the table is not
-- registered or changed since; 42501 first for a client call whose caller
-- lacks a privilege the call needs), and 42501 when code of a role without
-- the rights pgjobs runs with here could run inside pgjobs
-- (pgjobs._require_trusted): the one place every path checks it. Locks
-- nothing.
DECLARE
    v_reg pgjobs.target_registry;
BEGIN
    v_reg := pgjobs._target_registration(p_target);
    PERFORM pgjobs._require_trusted(p_target);
    RETURN v_reg;
END
$function$;
