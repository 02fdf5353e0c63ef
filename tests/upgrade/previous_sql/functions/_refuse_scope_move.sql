CREATE OR REPLACE FUNCTION pgjobs._refuse_scope_move(p_target regclass, p_scope text,
                                                     p_moved_to text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Raises 22023: a row a job wrote for scope p_scope came out of its
-- statement with another scope (p_moved_to: its scope column as text, NULL
-- for a NULL). The RETURNING of every client write (backfill's UPDATE, an
-- import's INSERT) calls it for such a row, so the statement, and with it
-- the move, is undone. pgjobs._generated_from refuses the columns a
-- generated scope is computed from before the job runs; a BEFORE trigger
-- (or a generated column added since the submit) that computes the scope
-- from a column the job writes is only seen here, in the row it returned.
-- Otherwise a session confined to one tenant moved that tenant's rows, or
-- imported rows, into another. An import rejects the record (22023, like a
-- scope column that names another scope); a backfill fails. Locks nothing.
BEGIN
    RAISE EXCEPTION 'a row written for scope % of % came out in scope %',
                    quote_literal(left(p_scope, 200)), p_target,
                    coalesce(quote_literal(left(p_moved_to, 200)), 'NULL')
        USING ERRCODE = '22023',
        HINT = 'A trigger, rule or generated column of the target computes the scope from a '
               'column this job writes: a job never moves rows to another scope. Leave that '
               'column out of the set or the source.';
END
$$;
