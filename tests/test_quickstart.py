"""docs/quickstart.md is followed verbatim, and README.md's SQL snippet works.

Every code block of the quickstart but the install block (a clone and a
virtual environment: this test runs inside one already) is run in order, in
one bash process, against a throwaway embedded cluster (its own
PGJOBS_HOME): `sh` blocks as they are, `sql` blocks through
`psql "$PGJOBS_DSN"` as the page says. Then the README's SQL block runs on
the same database. The outcome is checked against what the page promises.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgjobs import embedded

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(page: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer((ROOT / page).read_text())]


def as_bash(kind: str, text: str) -> str:
    if kind == "sh":
        return text
    assert kind == "sql", f"a {kind} block: the quickstart test runs sh and sql only"
    return f"psql \"$PGJOBS_DSN\" -X -q -v ON_ERROR_STOP=1 <<'PGJOBS_SQL'\n{text}PGJOBS_SQL\n"


def test_the_install_block_is_a_venv_or_pipx_install() -> None:
    """The one block not run: it must say how to install where Debian's Python
    refuses a bare pip, and must not name the unrelated `pgjobs` distribution."""
    kind, text = blocks("docs/quickstart.md")[0]
    assert kind == "sh"
    assert "git clone" in text and "python3 -m venv" in text and "pip install -e" in text
    assert not re.search(r"pip install\s+['\"]?pgjobs\b", text)
    page = (ROOT / "docs/quickstart.md").read_text()
    assert "pipx install" in page and "pgjobs-engine" in page


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PGJOBS_HOME of its own (under /tmp, readable by the postgres user when the
    suite runs as root), a working directory, no DSN in the environment."""
    path = Path(tempfile.mkdtemp(prefix="pgjobs-quickstart-", dir="/tmp"))
    path.chmod(0o755)
    monkeypatch.setenv("PGJOBS_HOME", str(path / "home"))
    for var in ("PGJOBS_DSN", "DATABASE_URL", "PGJOBS_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield path
    finally:
        try:
            embedded.down()
        finally:
            shutil.rmtree(path, ignore_errors=True)


def run_script(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # `pgjobs` of this checkout first, then the server's own psql.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                   str(embedded.find_bindir()), env.get("PATH", "")])
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_quickstart_runs_verbatim_and_does_what_it_says(home: Path) -> None:
    if not embedded.pg_cron_available():
        pytest.skip("pg_cron is not installed: the quickstart's pgjobs.schedule() needs it")
    found = blocks("docs/quickstart.md")
    assert len(found) >= 8
    work = home / "work"
    work.mkdir()
    # The README's snippet, on the quickstart's database, after the quickstart.
    readme = [b for b in blocks("README.md") if b[0] == "sql"]
    assert len(readme) == 1
    script = "".join(as_bash(kind, text) for kind, text in found[1:] + readme)
    script += 'echo "PGJOBS_DSN=$PGJOBS_DSN"\n'
    done = run_script(script, work)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    dsn = done.stdout.strip().splitlines()[-1].removeprefix("PGJOBS_DSN=")
    assert dsn == embedded.dsn_if_running()

    with psycopg.connect(dsn) as conn:
        jobs = conn.execute("SELECT id, kind, status FROM pgjobs.jobs ORDER BY id").fetchall()
        # delete, backfill, export from the shell; delete, backfill in SQL; README's delete.
        assert [(k, s) for _, k, s in jobs[:5]] == [
            ("delete", "succeeded"), ("backfill", "succeeded"), ("export", "succeeded"),
            ("delete", "succeeded"), ("backfill", "succeeded")]
        assert [k for _, k, _ in jobs[5:]] == ["delete"]

        def count(where: str) -> int:
            row = conn.execute(f"SELECT count(*) FROM user_table_rows WHERE {where}").fetchone()
            assert row is not None
            return int(row[0])

        # "1: the excluded row 9" (the count the page prints, before the README's delete
        # of archived rows with amount < 10, which row 9 (amount 9) is).
        assert count("table_id = 42 AND data @> '{\"status\": \"archived\"}' AND id <> 9") == 0
        assert count("table_id <> 42 AND data @> '{\"status\": \"archived\"}'") > 0
        assert count("table_id = 42 AND (data->>'amount')::int = 7 AND id <> 7") == 0
        assert count("id = 7") == 1
        assert count("table_id = 42 AND data ? 'reviewed'") > 0
        assert count("table_id = 42 AND (data->>'amount')::int < 10 AND (data->>'amount')::int"
                     " <> 8 AND data->>'reviewed' IS DISTINCT FROM 'true'") == 0
        assert count("table_id = 42 AND data @> '{\"amount\": 8, \"reviewed\": false}'") > 0
    exports = list((work / "pgjobs-exports").rglob("*.csv.gz"))
    assert len(exports) == 1, exports
