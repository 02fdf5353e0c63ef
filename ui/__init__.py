"""``pgjobs ui``: a small web dashboard over the jobs (issue 14).

An ASGI app (Starlette, served by uvicorn) that reads everything through SQL
as the role of its DSN, so the database's privileges and the row policies of
``pgjobs.jobs`` decide what it shows. It holds exactly two database
connections whatever the number of browsers: one LISTENs on ``pgjobs`` and
feeds every browser's ``/events`` stream (:mod:`pgjobs.ui.hub`), the other
serves the pages, the JSON API, ``/metrics`` and the actions.

The packages come with the optional extra ``ui`` (:func:`pgjobs.errors.install_hint`).
"""

from __future__ import annotations

from pgjobs.errors import InvalidInput, install_hint

EXTRA_MODULES = ("starlette", "uvicorn", "prometheus_client")


def require_extra() -> None:
    """Raise a usage error naming the extra when its packages are missing."""
    import importlib.util

    missing = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidInput(
            f"pgjobs ui needs {', '.join(missing)}, which are not installed",
            hint=install_hint("ui"))
