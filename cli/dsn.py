"""Which database a command talks to: resolved here, in the CLI layer.

The core (:mod:`pgjobs.db`) only connects to the DSN it is given; deciding
between ``--dsn``, the environment and the embedded development cluster is
a command-line concern, so the core never imports :mod:`pgjobs.embedded`.
"""

from __future__ import annotations

import os

from pgjobs import embedded
from pgjobs.errors import InvalidInput, NoDatabase


def configured_dsn(explicit: str | None = None) -> str | None:
    """The DSN configured for this process: explicit (``--dsn``/``PGJOBS_DSN``), else
    ``PGJOBS_DSN``, else ``DATABASE_URL``; None when there is none."""
    if explicit:
        return explicit
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        value = os.environ.get(var)
        if value and not value.strip():
            # Blanks are no DSN: libpq read them as its defaults (another database).
            raise InvalidInput(f"environment variable {var} is blank (only whitespace), "
                               "which is neither a DSN nor unset",
                               hint=f"give {var} a DSN, or unset it (`unset {var}`)")
        if value:
            return value
    return None


def resolve_dsn(explicit: str | None = None, *, start_embedded: bool = False) -> str:
    """The DSN to use: the configured one (:func:`configured_dsn`), else the embedded
    local cluster when it is running. Only ``start_embedded`` (``pgjobs demo``) starts
    it; otherwise a stopped cluster stays stopped and :class:`NoDatabase` (exit 2) says
    what to do. Callers announce the embedded cluster themselves (the CLI: stderr)."""
    configured = configured_dsn(explicit)
    if configured:
        return configured
    if start_embedded:
        return embedded.ensure_dsn()
    dsn = embedded.dsn_if_running()
    if dsn is None:
        raise NoDatabase(
            "no database configured (--dsn, PGJOBS_DSN, DATABASE_URL) and the embedded "
            "cluster is not running",
            hint="run `pgjobs dev up` to start the embedded cluster, or pass --dsn",
        )
    return dsn
