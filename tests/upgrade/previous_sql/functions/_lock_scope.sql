CREATE OR REPLACE FUNCTION pgjobs._lock_scope(p_target regclass, p_scope text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The gate's lock of (p_target, p_scope), to the end of the transaction:
-- writing submits (pgjobs._insert_job_row) and retries (pgjobs._retry_as)
-- of one scope check on_conflict and queue their job one at a time. A row
-- of pgjobs.scope_locks, made on first use and locked FOR UPDATE, which no
-- client can lock (it needs UPDATE on the table); it was an advisory lock,
-- which any role could take and hold, hanging the tenant's submits
-- (migration 0037). Locks: that row.
BEGIN
    LOOP
        PERFORM FROM pgjobs.scope_locks s
         WHERE s.target = p_target AND s.scope = p_scope
           FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO pgjobs.scope_locks (target, scope) VALUES (p_target, p_scope)
            ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;
