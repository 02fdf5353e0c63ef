-- pgjobs 0015: import batches carry the source text of their records.
-- A CSV record the database refused (a value its column's type refuses, a
-- CHECK) was kept in the rejects as the staging row's text, e.g.
-- `(2,bad-int,x,)`, not as the record read (a JSONL line, with its line end
-- rewritten). pgjobs.import_batch now takes the records' source text
-- (p_records) and may be called without it and without the records' lines
-- (p_lines): a batch that has a record refused then asks the worker for
-- them, so the common batch sends neither. A new signature: the old one
-- goes here, the new one is created from sql/functions/import_batch.sql.
-- depends: 0018.writing_kind

DROP FUNCTION IF EXISTS pgjobs.import_batch(bigint, text, text[], bigint[], bigint, bigint,
                                            jsonb, jsonb);
