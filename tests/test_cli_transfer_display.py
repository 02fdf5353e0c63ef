"""The one-shot export's and import's progress display (one base,
`pgjobs.cli.progress.TransferDisplay`): the bar on a terminal and the plain
line when piped each say the kind's figures, and closing draws the bar complete
whether or not a total was known."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from pgjobs.cli.export import _Display as ExportDisplay
from pgjobs.cli.importing import _Display as ImportDisplay


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _feed(display: Any, kind: str) -> None:
    if kind == "export":
        display.progress(1500, 2_000_000)
        display.total = 3000
    else:
        display.progress(1500, 2_000_000, 4_000_000)


@pytest.mark.parametrize("kind, cls", [("export", ExportDisplay), ("import", ImportDisplay)])
@pytest.mark.parametrize("total_known", [True, False])
def test_the_bar_shows_the_kind_and_closes_complete(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                    cls: Any, total_known: bool) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    display = cls(7)
    assert display.bar is not None, "a terminal gets the bar"
    if total_known:
        _feed(display, kind)
    else:
        display.rows, display.bytes = 1500, 2_000_000
    display.tick()
    task = display.bar.tasks[0]
    assert task.completed == (1500 if kind == "export" else 2_000_000)
    assert task.fields["rows" if kind == "import" else "rate"]
    display.note("a note")
    display.close()
    assert display.bar is None
    assert task.total == (task.completed if not total_known
                          else 3000 if kind == "export" else 4_000_000)
    assert "job 7" in terminal.getvalue() and kind in terminal.getvalue()
    assert "a note" in terminal.getvalue()


@pytest.mark.parametrize("kind, cls, expected", [
    ("export", ExportDisplay, "job 7: 1,500/3,000 rows, 2.0 MB, "),
    ("import", ImportDisplay, "job 7: 1,500 records, 2.0 MB of 4.0 MB, "),
])
def test_piped_it_prints_a_plain_line(capsys: pytest.CaptureFixture[str], kind: str, cls: Any,
                                      expected: str) -> None:
    display = cls(7)
    assert display.bar is None
    _feed(display, kind)
    display.tick()
    line = capsys.readouterr().err
    assert line.startswith(expected) and line.rstrip().endswith("MB/s"), line
    display.tick()  # within two seconds: nothing more
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("cls", [ExportDisplay, ImportDisplay])
def test_quiet_and_no_progress(capsys: pytest.CaptureFixture[str], cls: Any) -> None:
    for quiet, note_said in ((True, False), (False, True)):
        display = cls(7, quiet=quiet, no_progress=not quiet)
        display.tick()
        display.note("a note")
        display.close()
        assert capsys.readouterr().err == ("a note\n" if note_said else "")
