"""What every benchmark shares: the server to measure on (a given one, or a
throwaway cluster like the test suite's) and URLs of its databases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests.pgcluster`


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
    from tests.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    try:
        yield cluster.url(), "throwaway cluster (fsync off, synchronous_commit off)"
    finally:
        cluster.stop()
