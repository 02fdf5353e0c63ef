CREATE OR REPLACE FUNCTION pgjobs.client_room()
RETURNS TABLE (role name, kept_bytes bigint, max_item_bytes_per_client bigint,
               room_bytes bigint, jobs_keeping_bytes bigint, held boolean)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The calling client's room under max_item_bytes_per_client: what it keeps
-- now, the ceiling, the room left and how many of its jobs keep bytes
-- (pgjobs._client_room_as). For pgjobs_client. Read-only; locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the engine
-- counts a submit for (pgjobs._caller: the SET ROLE role, the owner of a
-- SECURITY DEFINER function that calls it), and the SECURITY DEFINER
-- pgjobs._client_room_as answers for that role only.
DECLARE
    v_row jsonb;
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    FOREACH v_row IN ARRAY pgjobs._client_room_as(current_user) AS sealed_call LOOP
        RETURN QUERY SELECT (v_row ->> 'role')::name, (v_row ->> 'kept_bytes')::bigint,
                            (v_row ->> 'max_item_bytes_per_client')::bigint,
                            (v_row ->> 'room_bytes')::bigint,
                            (v_row ->> 'jobs_keeping_bytes')::bigint, (v_row ->> 'held')::boolean;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs.client_room() IS
'The calling role''s room under max_item_bytes_per_client: role, kept_bytes (what its kept jobs '
'hold past their allowance: items, exclude lists, payloads past 4096 bytes, import rejects), '
'max_item_bytes_per_client (the ceiling), room_bytes (left before a submit or add_items is '
'refused with 55006), jobs_keeping_bytes, held (false for an administrator, who is not held to '
'it). Only ever about the caller.';
