CREATE OR REPLACE FUNCTION pgjobs._job_input_bytes(p_job pgjobs.jobs)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The bytes a job row keeps of what its client gave, past the 4096 every
-- job may keep uncounted (held by max_jobs_kept_per_client instead), in
-- octets of their text: its payload and options, and what was compiled
-- from them and stored beside them (the predicate and assignments, the
-- filter's and the set's values again and often longer; a delete's
-- survivors, its short exclude list again). What pgjobs._insert_job_row
-- and pgjobs._submit_delete_as count toward max_item_bytes_per_client
-- (pgjobs._keep_client_bytes); 0 for a common job, which takes no lock.
SELECT greatest(octet_length(p_job.payload::text)
                + coalesce(octet_length(p_job.options::text), 0)
                + coalesce(octet_length(p_job.predicate), 0)
                + coalesce(octet_length(p_job.assignments), 0)
                + coalesce(octet_length(p_job.survivors::text), 0)
                - 4096, 0)::bigint
$$;

COMMENT ON FUNCTION pgjobs._job_input_bytes(pgjobs.jobs) IS
'The bytes of a job row''s client inputs (payload, options, predicate, assignments, survivors) '
'past the 4096 each job keeps uncounted: what counts toward max_item_bytes_per_client.';
