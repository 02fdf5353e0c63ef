"""Every entry point that compiles a client's filter, as one call each.

The trust tests over filters (an empty $and or $or, an empty operand under a
negation) run every case through each of these: a refusal must hold at every
door, not only at the one a test happened to use. Each takes a connection to
a database seeded with make_rows_target (scope '1') and the filter's JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from tests.support.jobs import scalar

Conn = psycopg.Connection[Any]


def _submit(kind: str) -> Callable[[Conn, str], object]:
    if kind == "backfill":
        return lambda c, f: scalar(c, "SELECT pgjobs.submit_backfill('user_table_rows', '1', "
                                      "%s::jsonb, '{\"label\": \"x\"}')", (f,))
    return lambda c, f: scalar(c, f"SELECT pgjobs.submit_{kind}('user_table_rows', '1', "
                                  "%s::jsonb)", (f,))


FILTER_ENTRIES: dict[str, Callable[[Conn, str], object]] = {
    "submit_delete": _submit("delete"),
    "submit_backfill": _submit("backfill"),
    "submit_export": _submit("export"),
    "preview": lambda c, f: scalar(c, "SELECT pgjobs.preview('user_table_rows', '1', "
                                      "%s::jsonb)", (f,)),
    "visible": lambda c, f: c.execute("SELECT * FROM pgjobs.visible('user_table_rows', '1', "
                                      "%s::jsonb)", (f,)).fetchall(),
    "visible_count": lambda c, f: scalar(c, "SELECT pgjobs.visible_count('user_table_rows', "
                                            "'1', %s::jsonb)", (f,)),
    "compile_filter": lambda c, f: scalar(c, "SELECT pgjobs.compile_filter('user_table_rows', "
                                             "%s::jsonb)", (f,)),
}
