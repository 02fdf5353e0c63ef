"""pgjobs: a Postgres-native engine for bulk background jobs on big tables.

The database is the engine (schema ``pgjobs``); this package migrates it,
drives it from the command line and streams exports to object storage.
"""

from __future__ import annotations

__version__ = "0.1.0"
