-- pgjobs 0041: the filter compiler knows the scope of the rows it selects.
-- A job's (and a preview's) filter is compiled with its scope, so that a
-- condition on the scope column, which every row of the scope satisfies
-- alike, is refused unless it restates the scope (pgjobs._compile_filter_field):
-- {"table_id": {"$ne": 8}} in scope 7 took the whole scope. pgjobs._compile_filter,
-- pgjobs._compile_filter_node and pgjobs._compile_filter_field take the scope,
-- so their old signatures are dropped here (pgjobs migrate creates the new
-- ones right after). Catalog only: jobs in flight keep the predicates they
-- were compiled to.
-- depends: 0040.tenant_turns

DROP FUNCTION IF EXISTS pgjobs._compile_filter(regclass, jsonb, pgjobs.target_registry);
DROP FUNCTION IF EXISTS pgjobs._compile_filter_node(jsonb, jsonb, name, integer, integer, text[]);
DROP FUNCTION IF EXISTS pgjobs._compile_filter_field(text, jsonb, jsonb, name, integer, integer,
                                                     text[]);
