CREATE OR REPLACE FUNCTION pgjobs._compiling_against(p_target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Called by a submit (pgjobs._submit_delete_as, _submit_backfill_as,
-- _submit_export_as, _submit_import_as) before it compiles the job: notes
-- p_target's columns as they are now (a digest of pgjobs._target_columns)
-- in the transaction-local setting pgjobs.compiled_columns, which
-- pgjobs._insert_job_row compares with the columns it records. A column
-- renamed, dropped or retyped in between fails the submit (40001) rather
-- than recording columns the job was not compiled against. (Not a lock on
-- the table: a submit without a filter reads no row of it, and so never
-- waited for an ALTER TABLE, a VACUUM FULL or a CLUSTER to end.) The
-- submit clears it as it returns (pgjobs._leave); a submit that fails
-- instead is undone with its (sub)transaction. Locks nothing.
BEGIN
    PERFORM set_config('pgjobs.compiled_columns',
                       p_target::oid::text || ':' || md5(pgjobs._target_columns(p_target)::text),
                       true);
END
$$;
