CREATE OR REPLACE FUNCTION pgjobs._is_submitter(p_role name, p_name name, p_oid oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether role p_role submitted the job whose pgjobs.jobs.submitted_by is
-- p_name and submitted_by_oid p_oid: the one rule for "is this the
-- caller's own job", asked by every function that grants the submitter a
-- right on its job (pgjobs._controlled_job: cancel, pause, resume, retry,
-- add_items; pgjobs._keep_client_bytes). By oid where the job has one, so
-- a submitter renamed since (ALTER ROLE ... RENAME TO) keeps its jobs, and
-- a role created under a dropped submitter's name gets none of them. A
-- job without an oid is no role's: migration 0180 gave every job made
-- before migration 0033 the oid of the role that had its name then, and
-- left NULL only where that role was gone (judged by name, a role created
-- later under it got the job). p_name is asked no more: it stays in the
-- signature because the previous release's functions call this one between
-- an upgrade's migrations and its functions, and a new signature is a DROP
-- (SQL, not PL/pgSQL: a parameter left unread is no finding of plpgsql_check).
-- Policy jobs_client_read (migration 0180) and pgjobs._has_jobs_on spell
-- the same rule inline (a policy calls no pgjobs function). NULL role or
-- a role that does not exist: false. One syscache lookup (to_regrole).
-- Locks nothing.
SELECT coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(p_role))::pg_catalog.oid
                OPERATOR(pg_catalog.=) p_oid, false);
$$;
