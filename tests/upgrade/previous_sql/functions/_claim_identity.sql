CREATE OR REPLACE FUNCTION pgjobs._claim_identity(p_worker text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The identity of one claim: the worker's name, '#', 16 hex digits from
-- gen_random_uuid() (a strong random source). Every claiming path stores it
-- in pgjobs.jobs.worker and returns it in the job row; every fenced call
-- compares it exactly, so a stale attempt under the same name (its lease
-- expired, the job claimed again) is fenced off, and no two claims share
-- one. PL/pgSQL: a simple expression, evaluated without planning each call.
-- Locks nothing.
BEGIN
    RETURN p_worker || '#' || substr(md5(gen_random_uuid()::text), 1, 16);
END
$$;
