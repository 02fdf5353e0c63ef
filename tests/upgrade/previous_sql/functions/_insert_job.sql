CREATE OR REPLACE FUNCTION pgjobs._insert_job(
    p_kind text,
    p_target regclass,
    p_scope text,
    p_payload jsonb,
    p_options jsonb,
    p_extra_options text[] DEFAULT '{}',
    p_predicate text DEFAULT NULL,
    p_assignments text DEFAULT NULL,
    p_reg pgjobs.target_registry DEFAULT NULL)
RETURNS pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Writes a job row (pgjobs._insert_job_row: every check, the gate) and
-- announces it: event `submitted`. Every submit passes here except
-- pgjobs.submit_items, which announces its job after counting its items.
-- (No DateStyle pinned: the options are parsed in the caller's settings,
-- as pgjobs._insert_job_row does.) p_reg: see pgjobs._insert_job_row.
-- Locks: those of pgjobs._insert_job_row.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    v_job := pgjobs._insert_job_row(p_kind, p_target, p_scope, p_payload, p_options,
                                    p_extra_options, p_predicate, p_assignments, p_reg);
    PERFORM pgjobs._notify(v_job, 'submitted');
    RETURN v_job;
END
$$;
