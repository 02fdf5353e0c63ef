CREATE OR REPLACE FUNCTION pgjobs._engine_seen_notes()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What pgjobs._engine_seen noted: {"run": {"at", "backend_type",
-- "application_name"}, "prune": {...}}, a kind absent until it ran. Also
-- reads the one row 'engine_seen' of releases before stop 29 (both kinds in
-- one value), so a doctor right after `pgjobs migrate` still sees the runs
-- noted before it; a newer note of a kind wins. Locks: none.
SELECT coalesce((SELECT s.value FROM pgjobs.settings s WHERE s.key = 'engine_seen'), '{}')
       || coalesce((SELECT jsonb_object_agg(substr(s.key, length('engine_seen.') + 1), s.value)
                      FROM pgjobs.settings s
                     WHERE s.key IN ('engine_seen.run', 'engine_seen.prune')
                       AND s.value ? 'at'), '{}')
$$;
