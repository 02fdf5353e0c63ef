CREATE OR REPLACE FUNCTION pgjobs.add_items(p_id bigint, p_items jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Appends the elements of the JSON array p_items as items of fan-out job
-- p_id while it is open (queued, running or paused); its total grows by
-- as many. Returns the number added.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._add_items_as checks that role's
-- rights (the rule of pgjobs.cancel: pgjobs._controlled_job, and the
-- privilege pgjobs.submit_items needs, held now).
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._add_items_as(current_user, p_id, p_items) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.add_items(bigint, jsonb) IS
'Appends items (a JSON array, one payload per element) to an open fan-out job; its total grows '
'by as many. The caller needs what submit_items needs, at the time of the call, even for its '
'own job, and to be the job''s submitter or an administrator (the items count toward the '
'submitter''s max_item_bytes_per_client). P0002 unknown id; 42501 no privilege or another '
'role''s job; 22023 not a fan-out job; 55000 the job has finished. Returns the number of items '
'added.';
