"""file:// exports write only where their URI names: a symbolic link inside an
allowed folder (as import sources already are refused for) must not lead the
worker's writes outside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import job, make_items, run_export, submit_export

Conn = psycopg.Connection[Any]


@pytest.mark.parametrize("link", ["destination", "below"])
def test_an_export_through_a_symbolic_link_is_refused(conn: Conn, dsn: str, tmp_path: Path,
                                                      link: str) -> None:
    """The allow-list judges the destination's text; a link planted at the
    destination folder, or at a folder the export's object key goes through
    ({target}/{scope}/...), made the worker create directories and write the
    object wherever the link pointed."""
    make_items(conn)
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{allowed}",))
    if link == "destination":
        os.symlink(outside, allowed / "exports")
    else:
        (allowed / "exports").mkdir()
        os.symlink(outside, allowed / "exports" / "items")
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{allowed}/exports"})
    outcome = run_export(dsn, job_id, "file:///unused")
    row = job(conn, job_id)
    assert list(outside.rglob("*")) == [], list(outside.rglob("*"))
    assert outcome.status == "failed" and row["attempts"] == 1, (outcome, row["error"])
    assert "symbolic link" in row["error"], row["error"]


def test_a_deletion_through_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    """An export's object is deleted (pgjobs.prune, the sweep) at the URI it was
    written to; a folder of that URI replaced by a link since made the worker
    delete the file of that name wherever the link pointed."""
    from pgjobs.poller import storage

    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside" / "1"
    allowed.mkdir()
    outside.mkdir(parents=True)
    (outside / "7.csv").write_text("someone else's")
    os.symlink(outside.parent, allowed / "items")
    with pytest.raises(storage.StorageError) as caught:
        storage.delete(f"file://{allowed}/items/1/7.csv")
    assert "symbolic link" in str(caught.value) and not caught.value.retryable
    assert (outside / "7.csv").read_text() == "someone else's"
    # A link at the object itself is what is deleted, not what it points to.
    os.symlink(outside / "7.csv", allowed / "8.csv")
    assert storage.delete(f"file://{allowed}/8.csv")
    assert (outside / "7.csv").exists() and not (allowed / "8.csv").exists()
