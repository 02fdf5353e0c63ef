CREATE OR REPLACE FUNCTION pgjobs._stats_client_bytes()
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs.stats()'s client_bytes: each client's running total under
-- max_item_bytes_per_client (pgjobs.client_room_locks.kept_bytes, what
-- pgjobs._keep_client_bytes counts), as [{role, kept_bytes,
-- max_item_bytes_per_client, room_bytes, used}] (used: kept_bytes over the
-- ceiling, 0..1 and past 1 when the ceiling was lowered below the total),
-- the clients that keep bytes, the most first, at most 100. SECURITY
-- INVOKER on purpose, as stats() is: a caller that may not read
-- pgjobs.client_room_locks (a client; only administrators may) gets [],
-- never another tenant's total (a client reads its own with
-- pgjobs.client_room()). PL/pgSQL so that the table is planned, and its
-- privilege checked, only for a caller that may read it. A client whose
-- role was dropped is named by its oid. Reads the totals (no scan of
-- pgjobs.jobs). Locks nothing.
DECLARE
    v_max bigint;
BEGIN
    IF NOT has_table_privilege('pgjobs.client_room_locks', 'SELECT') THEN
        RETURN '[]'::jsonb;
    END IF;
    v_max := coalesce((pgjobs._defaults() ->> 'max_item_bytes_per_client')::bigint, 1073741824);
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'role', c.client, 'kept_bytes', c.kept_bytes,
                   'max_item_bytes_per_client', v_max,
                   'room_bytes', greatest(v_max - c.kept_bytes, 0),
                   'used', round(c.kept_bytes::numeric / v_max, 4))
                   ORDER BY c.kept_bytes DESC, c.client)
          FROM (SELECT coalesce(r.rolname::text, l.submitter_oid::text) AS client, l.kept_bytes
                  FROM pgjobs.client_room_locks l
                  LEFT JOIN pg_catalog.pg_roles r ON r.oid = l.submitter_oid
                 WHERE l.kept_bytes > 0
                 ORDER BY l.kept_bytes DESC, l.submitter_oid LIMIT 100) c), '[]'::jsonb);
END
$$;

COMMENT ON FUNCTION pgjobs._stats_client_bytes() IS
'Internal: pgjobs.stats()''s client_bytes, each client''s kept bytes against '
'max_item_bytes_per_client, for a caller that may read pgjobs.client_room_locks (else []).';
