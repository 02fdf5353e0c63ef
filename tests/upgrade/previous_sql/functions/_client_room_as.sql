CREATE OR REPLACE FUNCTION pgjobs._client_room_as(p_caller name)
RETURNS jsonb[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.client_room, run as pgjobs' owner for the role
-- p_caller (the current_user of pgjobs.client_room, its only permitted
-- caller: pgjobs._enter, 42501 otherwise, so no client names another
-- role). The role's running total (pgjobs.client_room_locks.kept_bytes,
-- kept by pgjobs._keep_client_bytes, which counts for the job's submitter
-- by oid: a role dropped and created again under the name starts from 0),
-- set_defaults' max_item_bytes_per_client (else 1073741824), the room left
-- (never below 0: a ceiling lowered below the total leaves none), the
-- number of its kept jobs that count bytes, and whether it is held to the
-- ceiling (an administrator is not: held false, room as for a client).
-- A plain read: no lock, so a total another session of the role is
-- changing is read as last committed. Locks nothing.
DECLARE
    v_oid oid;
    role name;
    kept_bytes bigint;
    max_item_bytes_per_client bigint;
    room_bytes bigint;
    jobs_keeping_bytes bigint;
    held boolean;
BEGIN
    p_caller := pgjobs._enter('client_room', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    role := p_caller;
    SELECT r.oid INTO v_oid FROM pg_catalog.pg_roles r WHERE r.rolname = p_caller;
    kept_bytes := coalesce((SELECT l.kept_bytes FROM pgjobs.client_room_locks l
                             WHERE l.submitter_oid = v_oid), 0);
    max_item_bytes_per_client := coalesce(
        (pgjobs._defaults() ->> 'max_item_bytes_per_client')::bigint, 1073741824);
    room_bytes := greatest(max_item_bytes_per_client - kept_bytes, 0);
    jobs_keeping_bytes := (SELECT count(*) FROM pgjobs.jobs j
                            WHERE j.submitted_by_oid = v_oid AND j.kept_bytes > 0);
    held := NOT pg_has_role(p_caller, 'pgjobs_admin', 'MEMBER');
    PERFORM pgjobs._leave(NULL::bigint);
    -- one row, as an array: pgjobs.client_room walks it with FOREACH, a call
    -- shape pgjobs._sealed_frame lets in after an error
    RETURN ARRAY[jsonb_build_object(
        'role', role, 'kept_bytes', kept_bytes,
        'max_item_bytes_per_client', max_item_bytes_per_client,
        'room_bytes', room_bytes, 'jobs_keeping_bytes', jobs_keeping_bytes, 'held', held)];
END
$$;

COMMENT ON FUNCTION pgjobs._client_room_as(name) IS
'Internal: the body of pgjobs.client_room, for its caller only (pgjobs._enter).';
