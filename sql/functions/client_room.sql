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
    v_room record;
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    v_room := pgjobs._client_room_as(current_user) AS sealed_call;
    RETURN QUERY SELECT v_room.role, v_room.kept_bytes, v_room.max_item_bytes_per_client,
                        v_room.room_bytes, v_room.jobs_keeping_bytes, v_room.held;  -- one row
END
$$;

COMMENT ON FUNCTION pgjobs.client_room() IS
'The calling role''s room under max_item_bytes_per_client: role, kept_bytes (what its kept jobs '
'hold past their allowance: items, exclude lists, payloads past 4096 bytes, import rejects), '
'max_item_bytes_per_client (the ceiling), room_bytes (left before a submit or add_items is '
'refused with 55006), jobs_keeping_bytes, held (false for an administrator, who is not held to '
'it). Only ever about the caller.';
