CREATE OR REPLACE FUNCTION pgjobs._confined_targets(p_role name)
RETURNS regclass[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The tables on which row-level security confines p_role
-- (pgjobs._row_security_confines, the one place that rule lives, asked of
-- each table with row security enabled: only those can confine anyone), as
-- one array. Policy jobs_client_read on pgjobs.jobs (migration 0024) calls
-- it once per statement, as an InitPlan, and compares each job's target
-- with it, instead of calling pgjobs._row_security_confines once per job
-- row (12 s for a client's count(*) over 100k jobs). Costs one pass over
-- pg_class's rows (no index on relrowsecurity), a fraction of a
-- millisecond in a database of a few thousand relations. SECURITY DEFINER:
-- the policy calls it as the client, which may not read
-- pgjobs.target_registry (ignore_row_security). Locks nothing.
BEGIN
    RETURN ARRAY(SELECT c.oid::regclass
                   FROM pg_catalog.pg_class c
                  WHERE c.relrowsecurity
                    AND pgjobs._row_security_confines(c.oid::regclass, p_role)
                  ORDER BY c.oid);
END
$$;
