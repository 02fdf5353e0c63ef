CREATE OR REPLACE FUNCTION pgjobs._row_predicate(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_filter jsonb,
    p_exclude text[],
    p_cutoff timestamptz)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The exact row set of a delete, backfill or export job, as one SQL boolean
-- over the target's unqualified columns (pgjobs._row_selection's predicate,
-- where the rules are written down). Raises 22023 for a bad scope, filter
-- or exclusion. Locks nothing.
DECLARE
    v_predicate text;
BEGIN
    SELECT s.predicate INTO v_predicate
      FROM pgjobs._row_selection(p_reg, p_scope, p_filter, p_exclude, p_cutoff) s;
    RETURN v_predicate;
END
$$;
