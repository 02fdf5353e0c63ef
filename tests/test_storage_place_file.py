"""storage.place_file: a file put at a name only where no name is.

An export's temporary file was renamed into place (renameat replaces any file
there); it is now hard-linked (linkat fails on any name), and on a file
system that refuses hard links, renamed with RENAME_NOREPLACE, else renamed
after a look. Each way: the temporary name is gone once the file is in place,
and a name that exists is never replaced (FileExistsError, both files as
they were).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgjobs.poller import storage

MODES = ["link", "renameat2", "look"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         tmp_path: Path) -> Iterator[str]:
    root = storage.trust_root(f"file://{tmp_path}")
    if request.param != "link":
        def no_links(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.EPERM, "hard links refused")

        monkeypatch.setattr(storage.os, "link", no_links)
    if request.param == "look":
        monkeypatch.setattr(storage, "_renameat2", lambda: None)
    yield str(request.param)
    storage.release_root(root)


def test_a_free_name_is_taken_and_the_temporary_name_goes(
        mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tmp, final = tmp_path / ".a.csv.pgjobs-x.tmp", tmp_path / "a.csv"
    tmp.write_bytes(b"mine\n")
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        storage.place_file(str(tmp), str(final), "cannot create")
    # Only the look-then-rename says it may miss a file created meanwhile.
    assert ("neither hard links" in caplog.text) == (mode == "look")
    assert final.read_bytes() == b"mine\n"
    assert not tmp.exists()


def test_a_name_that_exists_is_never_replaced(mode: str, tmp_path: Path) -> None:
    tmp, final = tmp_path / ".a.csv.pgjobs-x.tmp", tmp_path / "a.csv"
    tmp.write_bytes(b"mine\n")
    final.write_bytes(b"theirs\n")
    with pytest.raises(FileExistsError):
        storage.place_file(str(tmp), str(final), "cannot create")
    assert final.read_bytes() == b"theirs\n"
    assert tmp.read_bytes() == b"mine\n"
    assert sorted(os.listdir(tmp_path)) == [".a.csv.pgjobs-x.tmp", "a.csv"]
