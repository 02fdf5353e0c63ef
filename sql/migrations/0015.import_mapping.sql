-- pgjobs 0015: import batches carry the source text of their CSV records.
-- A CSV record the database refused (a value its column's type refuses, a
-- CHECK) was kept in the rejects as the staging row's text, e.g.
-- `(2,bad-int,x,)`, not as the record read. pgjobs.import_batch now takes
-- the records' source text (p_records, sent only when a batch has such a
-- reject: the worker is asked for it) and may be called without the lines
-- of its records (p_lines NULL: the batch's records are whole lines, one
-- each). A new signature: the old one goes here, the new one is created
-- from sql/functions/import_batch.sql.
-- depends: 0018.writing_kind

DROP FUNCTION IF EXISTS pgjobs.import_batch(bigint, text, text[], bigint[], bigint, bigint,
                                            jsonb, jsonb);
