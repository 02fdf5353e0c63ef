"""`pgjobs dev up | down | status` with a --home the filesystem refuses (under
/proc or /sys, below a file, a file itself): one line with a SQLSTATE and a
hint naming --home, never a traceback (`dev up --home /proc/x` ended in
FileNotFoundError's). `dev down` of a home that does not exist says "not
running" and creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main


@pytest.fixture(autouse=True)
def _no_ambient_home(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_HOME", "PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _homes(tmp_path: Path) -> list[str]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    return ["/proc/pgjobs-no-such-home", "/sys/pgjobs-no-such-home",
            str(a_file / "below"), str(a_file / "below" / "deeper")]


def _one_line(result: Result) -> str:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "[55000] (hint: " in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("index", range(4))
def test_dev_up_with_a_home_it_cannot_make(tmp_path: Path, index: int) -> None:
    home = _homes(tmp_path)[index]
    result = CliRunner().invoke(main, ["dev", "up", "--home", home])
    assert result.exit_code == 1, result.output
    line = _one_line(result)
    assert home in line or str(Path(home).parent) in line, line


@pytest.mark.parametrize("index", range(4))
def test_dev_down_with_a_home_that_is_not_there(tmp_path: Path, index: int) -> None:
    home = _homes(tmp_path)[index]
    result = CliRunner().invoke(main, ["dev", "down", "--home", home])
    assert (result.exit_code, result.stdout.strip()) == (0, "not running"), result.output
    assert not Path(home).exists()


def test_dev_status_below_a_file(tmp_path: Path) -> None:
    home = _homes(tmp_path)[2]
    result = CliRunner().invoke(main, ["dev", "status", "--home", home])
    assert result.exit_code == 1, result.output
    assert "pass --home (or set PGJOBS_HOME)" in _one_line(result)
