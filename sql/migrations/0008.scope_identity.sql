-- pgjobs 0008: scope identity. pgjobs._require_scope takes the target, so
-- that allowed_scopes entries compare as canonical scopes of its scope
-- column (pgjobs._scope_allowed); the one-argument version goes.
-- depends: 0004.tenancy

DROP FUNCTION IF EXISTS pgjobs._require_scope(text);
