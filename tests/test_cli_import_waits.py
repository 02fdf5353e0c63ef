"""`pgjobs import` run in this process behind another writing job of its scope
(a queued delete or backfill that no engine runs yet) printed only
"job N: 0 records, 0 B" lines, which read as a hang: it now says once that the
job waits its turn behind the scope's other writing job, and how to detach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.support import make_people
from tests.support.cli import cli_env

Conn = psycopg.Connection[Any]


def test_an_import_behind_a_queued_writer_says_it_waits(conn: Conn, dsn: str,
                                                         tmp_path: Path) -> None:
    make_people(conn)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{tmp_path}",))
    source = tmp_path / "in.csv"
    source.write_text("name\nann\n")
    os.chmod(tmp_path, 0o755)
    blocker = conn.execute("SELECT pgjobs.submit_delete('people', '1', '{}')").fetchone()
    assert blocker is not None
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "pgjobs.cli.main", "--dsn", dsn, "import",
                             "people", "--scope", "1", str(source)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120  # a guard against a hang, not a timing claim
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "waits its turn" in line:
                break
        # Piped, the progress lines keep coming: readline never blocks for good.
        # Naming the writer it waits behind (pgjobs._gate_holder), as status does.
        assert any(f"waits its turn: job {blocker[0]}, the writer of people scope 1, is "
                   "running or queued ahead of it" in line for line in lines), lines
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert sum("waits its turn" in line for line in [*lines, *err.splitlines()]) == 1
    assert "Traceback" not in err
