-- pgjobs 0037: the per-scope gate's lock is a row only pgjobs may lock. A
-- writing submit and a retry held a transaction-level advisory lock keyed
-- hashtextextended('pgjobs.gate:' || target oid || ':' || scope, 0) while
-- they checked on_conflict and queued the job; any role may take any
-- advisory lock, and the key is computed from public facts (the table's
-- oid, the tenant's scope), so a session of a role without a single pgjobs
-- grant that held it hung every writing submit and retry of that tenant.
-- They now lock this table's row of (target, scope) (pgjobs._lock_scope),
-- which no client can: FOR UPDATE needs UPDATE on the table, which only
-- pgjobs_admin has. One row per target and scope that ever had a writing
-- job (a few dozen bytes each); rows are kept, as a later submit locks the
-- same one.
-- depends: 0036.target_columns

CREATE TABLE pgjobs.scope_locks (
    target  regclass NOT NULL,
    scope   text     NOT NULL,
    PRIMARY KEY (target, scope)
);

COMMENT ON TABLE pgjobs.scope_locks IS
'One row per target and scope that had a writing job: its row lock serialises the writing '
'submits and retries of that scope (pgjobs._lock_scope). Written only through pgjobs functions.';
