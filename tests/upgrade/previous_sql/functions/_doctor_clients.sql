CREATE OR REPLACE FUNCTION pgjobs._doctor_clients()
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's check of the clients' byte ceiling
-- (clients.kept_bytes): a warning per client whose running total
-- (pgjobs.client_room_locks.kept_bytes, pgjobs._keep_client_bytes) is above
-- 80% of set_defaults' max_item_bytes_per_client (else 1073741824), before
-- its submits and add_items start failing with 55006, naming its largest
-- kept jobs and how room comes back (pruning its finished jobs, canceling
-- those it no longer needs, then pruning, or raising the ceiling); else one
-- ok row naming the client that keeps the most. Administrators are not held
-- to the ceiling and are not warned about. A client whose role was dropped
-- is named by its oid. Read-only.
DECLARE
    v_max bigint := coalesce((pgjobs._defaults() ->> 'max_item_bytes_per_client')::bigint,
                             1073741824);
    v_row record;
    v_warned boolean := false;
BEGIN
    check_name := 'clients.kept_bytes';
    target := NULL;
    FOR v_row IN
        SELECT l.submitter_oid, l.kept_bytes,
               coalesce(r.rolname::text, l.submitter_oid::text) AS client
          FROM pgjobs.client_room_locks l
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = l.submitter_oid
         WHERE l.kept_bytes > v_max * 0.8
           AND NOT coalesce(pg_has_role(r.oid, 'pgjobs_admin', 'MEMBER'), false)
         ORDER BY l.kept_bytes DESC, l.submitter_oid
    LOOP
        v_warned := true;
        status := 'warn';
        detail := format(
            'role %s keeps %s bytes of inputs, %s%% of max_item_bytes_per_client (%s): past it '
            'its submits and add_items are refused (55006); its largest kept jobs: %s',
            v_row.client, v_row.kept_bytes, round(100.0 * v_row.kept_bytes / v_max, 1), v_max,
            coalesce((SELECT string_agg(format('%s (%s, %s bytes)', j.id, j.status,
                                               j.kept_bytes), ', '
                                        ORDER BY j.kept_bytes DESC, j.id)
                        FROM (SELECT j.id, j.status, j.kept_bytes FROM pgjobs.jobs j
                               WHERE j.submitted_by_oid = v_row.submitter_oid
                                 AND j.kept_bytes > 0
                               ORDER BY j.kept_bytes DESC, j.id LIMIT 5) j), 'none'));
        fix := format(
            'SELECT pgjobs.prune(''1 hour'');  -- gives back the bytes of its jobs finished '
            'over an hour ago; cancel those it no longer needs first (SELECT pgjobs.cancel(id);), '
            'or raise the ceiling: SELECT pgjobs.set_defaults(''{"max_item_bytes_per_client": '
            '%s}'');', v_max * 2);
        RETURN NEXT;
    END LOOP;
    IF NOT v_warned THEN
        status := 'ok';
        fix := NULL;
        SELECT format('no client keeps more than 80%% of max_item_bytes_per_client (%s bytes)%s',
                      v_max,
                      CASE WHEN l.kept_bytes IS NOT NULL
                           THEN format('; the most: role %s, %s bytes',
                                       coalesce(r.rolname::text, l.submitter_oid::text),
                                       l.kept_bytes)
                           ELSE '; none keeps any' END)
          INTO detail
          FROM (SELECT 1) one
          LEFT JOIN LATERAL (SELECT * FROM pgjobs.client_room_locks l
                              WHERE l.kept_bytes > 0
                              ORDER BY l.kept_bytes DESC, l.submitter_oid LIMIT 1) l ON true
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = l.submitter_oid;
        RETURN NEXT;
    END IF;
END
$function$;

COMMENT ON FUNCTION pgjobs._doctor_clients() IS
'Internal: pgjobs.doctor''s check clients.kept_bytes, a warning per client (not an '
'administrator) keeping more than 80% of max_item_bytes_per_client.';
