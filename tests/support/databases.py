"""The databases of a test server: their names, URLs, empty ones, and
`pgjobs migrate` run on one several times at once.

Every database the suite creates is named by `database_name`, which carries the
process id (and a counter): two test runs sharing a server (PGJOBS_TEST_URL, or
pytest-xdist workers) never drop each other's databases.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def migrate_at_once(dsn: str, times: int = 2) -> tuple[list[Any], list[BaseException]]:
    """`pgjobs migrate` of ``dsn`` ``times`` times at the same moment (threads
    released together by a barrier): what each returned, and what each that
    failed raised."""
    from pgjobs.migrate import migrate

    results: list[Any] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(times)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate(dsn))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, failures
