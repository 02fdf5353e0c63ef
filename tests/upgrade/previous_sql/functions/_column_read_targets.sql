CREATE OR REPLACE FUNCTION pgjobs._column_read_targets()
RETURNS regclass[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The tables the calling role (current_user) reads as a whole through
-- column grants, as one array: those with a column grant on which
-- pgjobs._reads_every_column holds for it, the rule the engine's privilege
-- checks ask. Policy jobs_client_read on pgjobs.jobs and view
-- pgjobs.targets (migration 0160) call it once per statement, as an
-- InitPlan, and only for a row whose target the table-level SELECT check
-- refused (the InitPlan runs at its first use). SECURITY INVOKER on
-- purpose: current_user here is the role asking, and the SECURITY DEFINER
-- pgjobs._column_read_targets_as refuses any caller but this function
-- (pgjobs._enter). Takes no role: it answers about its caller only. Locks
-- nothing.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._column_read_targets_as(current_user) AS sealed_call;
END
$$;
