CREATE OR REPLACE FUNCTION pgjobs._builtin_kind(p_kind text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Is p_kind a kind pgjobs runs itself: delete and backfill (the engine),
-- export and import (the worker)? Each is submitted only through its own
-- function (pgjobs.submit_delete, ...), which validates its payload: the
-- filter, the set, the columns, the storage URI against the allow-list.
-- The one rule of pgjobs.submit and pgjobs.submit_items, which refuse these
-- kinds: a client that made an `import` with pgjobs.submit wrote the
-- payload the worker acts on itself, and its source was never checked
-- against the allow-list (the worker then read another tenant's export).
-- Locks nothing.
BEGIN
    RETURN p_kind IN ('export', 'import')        -- the worker's (pgjobs worker)
           OR p_kind = ANY (pgjobs._engine_kinds());  -- the engine's (pgjobs.run)
END
$$;
