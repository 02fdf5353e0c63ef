CREATE OR REPLACE FUNCTION pgjobs._controllable_as(
    p_caller name,
    p_ids bigint[])
RETURNS bigint[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.controllable, run as pgjobs' owner for the role
-- p_caller (the current_user of pgjobs.controllable, its only permitted
-- caller: pgjobs._enter, 42501 otherwise); every check is of p_caller
-- (pgjobs._caller), through pgjobs._control_allowed, the rule of
-- pgjobs._controlled_job in the form that does not raise. Reads the rows
-- of p_ids as pgjobs' owner, whom no row policy confines: the rule itself
-- leaves out what policy jobs_client_read hides from p_caller. One
-- statement whatever the number of ids. Locks nothing.
DECLARE
    v_ids bigint[];
BEGIN
    p_caller := pgjobs._enter('controllable', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    IF p_ids IS NULL THEN
        -- as every client entry point: a NULL argument is a mistake, never a default
        RAISE EXCEPTION 'ids must not be null' USING ERRCODE = '22023',
            HINT = 'Pass the jobs'' ids as an array, e.g. ARRAY[1, 2]::bigint[] ('
                   '''{}'' for none).';
    ELSIF cardinality(p_ids) > 10000 THEN
        RAISE EXCEPTION 'too many ids: % (at most 10000)', cardinality(p_ids)
            USING ERRCODE = '54000',
            HINT = 'Ask about a page of jobs at a time (the dashboard asks for the 50 it shows).';
    END IF;
    SELECT array_agg(j.id ORDER BY j.id) INTO v_ids
      FROM pgjobs.jobs j
     WHERE j.id = ANY (p_ids) AND pgjobs._control_allowed(j);
    RETURN pgjobs._leave(coalesce(v_ids, '{}'));
END
$$;
