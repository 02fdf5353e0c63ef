-- pgjobs 0012: engine fairness and statistics.
-- pgjobs._maybe_analyze takes the job (its checkpoint keeps how often the
-- job analyzed), so the version on (target, scope column) goes.
-- depends: 0008.scope_identity

DROP FUNCTION IF EXISTS pgjobs._maybe_analyze(regclass, name);
