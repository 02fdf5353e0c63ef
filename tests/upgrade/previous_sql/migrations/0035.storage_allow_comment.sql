-- pgjobs 0035: the storage allow-list's table comment says what the list
-- governs since imports arrived: export destinations and import sources, for
-- clients and for the workers (an import reads only an allowed source), and
-- that a prefix may hold {scope}. Only the comment changes.
-- depends: 0034.quoted_allowed_scopes

COMMENT ON TABLE pgjobs.storage_allow IS
'Storage prefixes (normalised URIs) that exports may write to and imports may read from: '
'a client may name only these as an export destination or import source, and the workers '
'check every object against them again. A prefix may hold {scope} as a whole path segment, '
'allowing each job only its own tenant''s folder. '
'Written by pgjobs.allow_storage / pgjobs.disallow_storage (administrators only).';
