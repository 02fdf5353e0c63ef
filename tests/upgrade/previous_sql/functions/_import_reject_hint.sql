CREATE OR REPLACE FUNCTION pgjobs._import_reject_hint(p_max integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The hint of an import that failed on a bad record (pgjobs.import_batch).
SELECT format('Fix the record (bytes before the last committed batch must stay as they are), '
              'then pgjobs.retry(id) resumes after the last committed batch; or submit again '
              'with a larger max_rejects (now %s): rejected records are listed in '
              'pgjobs.import_rejects and the rejects object.', p_max);
$$;
