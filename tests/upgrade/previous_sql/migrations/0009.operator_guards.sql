-- pgjobs 0009: operator guards (preview, unknown-field refusal). The filter
-- compiler's internal steps now also return the document paths they resolve
-- (an INOUT p_paths text[]), so their old signatures go; sql/functions
-- re-creates them (and the new pgjobs._compile_filter, pgjobs.preview).
-- depends: 0008.scope_identity

DROP FUNCTION IF EXISTS pgjobs._compile_filter_node(jsonb, jsonb, name, integer, integer);
DROP FUNCTION IF EXISTS pgjobs._compile_filter_field(text, jsonb, jsonb, name, integer, integer);
