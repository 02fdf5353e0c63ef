-- pgjobs 0034: export_chunk_sql takes the chunk's bound walked ahead (p_next):
-- a worker walks the next chunk's keys on its control connection while the
-- current chunk streams, instead of walking them in the chunk's transaction
-- before its COPY starts. The function is replaced by sql/functions.
-- depends: 0033.submitter_oid

DROP FUNCTION IF EXISTS pgjobs.export_chunk_sql(bigint, text, integer, text);
