CREATE OR REPLACE FUNCTION pgjobs._client_item_bytes(p_submitter oid, p_except bigint)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The bytes of inputs the role of oid p_submitter keeps beside its jobs
-- (fan-out items, delete exclude lists kept in pgjobs.job_exclusions):
-- the item_bytes of its jobs of every status (until pgjobs.prune deletes
-- them), but job p_except's, which the caller counts itself. 0 for a NULL
-- submitter (a role that no longer exists). The ceiling it is held to is
-- set_defaults' max_item_bytes_per_client
-- (pgjobs._require_client_item_room). An
-- index-only scan of jobs_client_item_bytes_idx (migration 0135): the
-- cost follows the client's fan-out jobs, not all it keeps. Locks nothing.
SELECT coalesce(sum(j.item_bytes), 0)::bigint
  FROM pgjobs.jobs j
 WHERE j.submitted_by_oid = p_submitter
   AND j.item_bytes IS NOT NULL
   AND j.id <> p_except;
$$;

COMMENT ON FUNCTION pgjobs._client_item_bytes(oid, bigint) IS
'The bytes of fan-out items and delete exclude lists (item_bytes) of every kept job of a '
'submitter but one: what max_item_bytes_per_client bounds (pgjobs._require_client_item_room).';
