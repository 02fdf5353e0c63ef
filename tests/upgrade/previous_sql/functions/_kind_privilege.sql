CREATE OR REPLACE FUNCTION pgjobs._kind_privilege(p_kind text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The privilege on the target that submitting (or, for anyone but the
-- submitter and admins, canceling) a job of kind p_kind needs: what the
-- caller could do to the rows itself. delete DELETE, backfill UPDATE,
-- import INSERT, export SELECT; any other (custom) kind UPDATE: its
-- external worker acts on the target's rows on the submitter's behalf,
-- and a writing kind holds the scope's gate. The one map, used by
-- pgjobs.submit and pgjobs.cancel, and by every claim's check of the
-- submitter (pgjobs._submitter_problem). Locks nothing.
-- PL/pgSQL rather than SQL: a SQL function with SET clauses is never
-- inlined and is planned again on every call (tens of microseconds on
-- every claim); a PL/pgSQL simple expression is not.
BEGIN
    RETURN CASE p_kind
        WHEN 'delete' THEN 'DELETE'
        WHEN 'backfill' THEN 'UPDATE'
        WHEN 'import' THEN 'INSERT'
        WHEN 'export' THEN 'SELECT'
        ELSE 'UPDATE' END;
END
$$;
