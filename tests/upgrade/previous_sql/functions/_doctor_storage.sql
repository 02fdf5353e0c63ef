CREATE OR REPLACE FUNCTION pgjobs._doctor_storage()
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's storage.deletions check. Read-only.
DECLARE
    v_ids   bigint[];
    v_count bigint;
    v_old   bigint;
    v_error text;
BEGIN
    target := NULL;
    -- Objects of pruned exports, deleted from storage by `pgjobs worker` ------
    check_name := 'storage.deletions';
    fix := NULL;
    SELECT count(*) FILTER (WHERE d.attempts < 10 AND d.queued_at < now() - interval '1 day'),
           count(*),
           array_agg(d.id ORDER BY d.id) FILTER (WHERE d.attempts >= 10),
           min(d.last_error) FILTER (WHERE d.attempts >= 10)
      INTO v_old, v_count, v_ids, v_error
      FROM pgjobs.storage_deletions d;
    IF v_ids IS NOT NULL THEN
        status := 'warn';
        detail := format('%s object deletion(s) gave up after 10 attempts (ids %s), e.g.: %s',
                         cardinality(v_ids), array_to_string(v_ids[1:20], ', '), v_error);
        fix := format('UPDATE pgjobs.storage_deletions SET attempts = 0, retry_at = now() '
                      'WHERE id = ANY (%L::bigint[]);  -- once the cause is fixed, then: '
                      'pgjobs worker --once', v_ids);
    ELSIF v_old > 0 THEN
        status := 'warn';
        detail := format('%s object(s) of pruned exports queued for deletion over a day ago: '
                         'no `pgjobs worker` is running', v_old);
        fix := 'pgjobs worker --once   # with the storage credentials of the exports';
    ELSE
        status := 'ok';
        detail := format('%s object(s) of pruned exports queued for deletion, none over a '
                         'day old', v_count);
    END IF;
    RETURN NEXT;
END
$function$;
