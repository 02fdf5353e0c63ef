"""What every benchmark shares: the server to measure on (a given one, or a
throwaway cluster like the test suite's) and URLs of its databases."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests.support.pgcluster`


def with_database(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextmanager
def server(dsn: str | None) -> Iterator[tuple[str, str]]:
    """(server URL, description): the given server, or a throwaway cluster."""
    if dsn:
        yield dsn, "given server"
        return
    from tests.support.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    try:
        yield cluster.url(), "throwaway cluster (fsync off, synchronous_commit off)"
    finally:
        cluster.stop()


@contextmanager
def scratch_database(server_url: str, prefix: str, keep: bool = False) -> Iterator[str]:
    """A new database (`{prefix}_{pid}`) on the server, dropped afterwards unless
    `keep`; yields its DSN."""
    name = f"{prefix}_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        if not keep:
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(drop)
