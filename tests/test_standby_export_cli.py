"""`pgjobs export --read-dsn` (env PGJOBS_READ_DSN): the in-process export reads
its rows from a real streaming standby exactly as `pgjobs worker --read-dsn`
does; a read DSN that is not a standby of this database is a usage error (exit
2) before anything is submitted."""


from __future__ import annotations

from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import content, job, make_items, plain_copy, scalar, with_database
from tests.support.standby import Standby

Conn = psycopg.Connection[Any]
SMALL = '{"chunk_rows": 17, "part_size": 2048}'


@pytest.fixture
def items(conn: Conn) -> None:
    make_items(conn)


def test_cli_export_reads_from_the_standby(conn: Conn, dsn: str, items: None, local_dir: str,
                                           read_dsn: str, replica: Conn) -> None:
    for how in ("option", "environment"):
        args = ["--read-dsn", read_dsn] if how == "option" else []
        env = {"PGJOBS_READ_DSN": read_dsn} if how == "environment" else {}
        result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "export",
                                           "items", "--scope", "1", "--options", SMALL, *args],
                                    env=env)
        assert result.exit_code == 0, result.output
        job_id = int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs"))
        row = job(conn, job_id)
        assert result.stdout.strip().splitlines()[-1] == row["result"]["uri"]
        assert content(row["result"]) == plain_copy(
            conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
        reads = row["checkpoint"]["reads"]
        assert reads["standby"] > 0 and reads["primary"] == 0, (how, reads)
    # Without it, the primary serves every chunk.
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "export", "items",
                                       "--scope", "1", "--options", SMALL])
    assert result.exit_code == 0, result.output
    reads = job(conn, int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs")))["checkpoint"]
    assert reads["reads"]["standby"] == 0 and reads["reads"]["primary"] > 0


def test_cli_export_refuses_a_read_dsn_of_another_database_before_submitting(
        conn: Conn, dsn: str, items: None, local_dir: str, standby: Standby) -> None:
    other = with_database(standby.url, "postgres")
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "export", "items",
                                       "--scope", "1", "--read-dsn", other])
    assert result.exit_code == 2, result.output
    assert "not a standby of this database" in result.stderr
    assert "Traceback" not in result.output
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before


def test_cli_export_help_shows_read_dsn_and_its_variable() -> None:
    result = CliRunner().invoke(main, ["export", "--help"])
    assert result.exit_code == 0
    assert "--read-dsn" in result.output and "PGJOBS_READ_DSN" in result.output
