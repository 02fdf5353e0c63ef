"""The databases of a test server: their names, URLs, and empty ones.

Every database the suite creates is named by `database_name`, which carries the
process id (and a counter): two test runs sharing a server (PGJOBS_TEST_URL, or
pytest-xdist workers) never drop each other's databases.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_counter = itertools.count()


def database_name(label: str) -> str:
    """pgjobs_<label>_<pid>_<n>: unique to this process and call."""
    return f"pgjobs_{label}_{os.getpid()}_{next(_counter)}"


def with_database(url: str, dbname: str) -> str:
    """The same server URL naming another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def admin_execute(url: str, *statements: str) -> None:
    """Run statements one by one in autocommit (CREATE/DROP DATABASE)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@contextmanager
def empty_database(cluster_url: str, label: str) -> Iterator[str]:
    """A new empty database (pgjobs not installed) for the block; dropped after."""
    name = database_name(label)
    admin_execute(cluster_url, f"CREATE DATABASE {name}")
    try:
        yield with_database(cluster_url, name)
    finally:
        admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
