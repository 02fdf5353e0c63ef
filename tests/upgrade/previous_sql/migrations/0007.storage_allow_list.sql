-- pgjobs 0007: the storage allow-list. An export's explicit destination
-- (and later an import's source) must fall under one of these prefixes,
-- kept in the normal form pgjobs._normalize_uri gives (scheme lower-case,
-- no trailing slash, no dot segments, no %-escapes); matching is on path
-- segment boundaries (pgjobs._storage_allowed). Only administrators write it
-- (pgjobs.allow_storage / pgjobs.disallow_storage); clients cannot read it.
-- An export without destination goes to the worker's own --storage, which
-- the operator chose and needs no entry here.
-- depends: 0004.tenancy

CREATE TABLE pgjobs.storage_allow (
    prefix     text PRIMARY KEY,
    added_at   timestamptz NOT NULL DEFAULT now(),
    added_by   name NOT NULL DEFAULT current_user
);

COMMENT ON TABLE pgjobs.storage_allow IS
'Storage prefixes (normalised URIs) that a client may name as an export destination. '
'Written by pgjobs.allow_storage / pgjobs.disallow_storage (administrators only).';
