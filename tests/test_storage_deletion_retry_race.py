"""A pgjobs.retry racing a worker's removal of the upload its export left.

An export that ended without its worker queues its upload (staged parts, a
temporary file, a multipart upload) in pgjobs.storage_deletions; a worker
claims the rows and removes what they name. pgjobs.retry takes the export
back to resume that upload, and the claim dropped the rows of such a job,
but only at the claim: a retry that landed between a worker's claim and its
removal (the worker settles up to 100 rows one after the other) let the
retried attempt take up an upload the worker then removed under it (it
noticed by the part digests and started over).

Now the worker removes each row in a transaction that locks it from
pgjobs.start_storage_deletion to its settling, and pgjobs.retry drops the
rows of its export under that lock: a retry between the claim and the
removal leaves the worker nothing to remove (the upload is resumed); one
during a removal is refused (55006) with a hint, the job unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import queries
from pgjobs.db import rows as db_rows
from pgjobs.poller.worker import Worker
from tests.support import (
    ITEMS_TENANT_1,
    job,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    scalar,
    submit_export,
)
from tests.support.exports import MANY_PARTS
from tests.test_sweep_destinations import handed_back, of, queued_leftovers, staged

Conn = psycopg.Connection[Any]


@pytest.fixture
def own(tmp_path: Path) -> str:
    return f"file://{tmp_path}/own"


def _ended_with_leftovers(conn: Conn, dsn: str, own: str, parallel: int,
                          monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    """An export handed back with its upload checkpointed, then canceled while
    queued: its upload leftovers wait in pgjobs.storage_deletions."""
    make_items(conn, rows=3000)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    ended = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": parallel})
    handed_back(conn, dsn, ended, own)
    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    before = of(ended, staged(own))
    assert before
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (ended,))
    assert queued_leftovers(conn, ended)
    return ended, before


def _resumes(conn: Conn, dsn: str, own: str, job_id: int) -> None:
    outcome = run_export(dsn, job_id, own)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert of(job_id, staged(own)) == []


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_retry_between_the_claim_and_the_removal_keeps_the_upload(
        conn: Conn, dsn: str, own: str, parallel: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker claimed the rows; the retry lands before it removes them: it
    removes nothing, the rows are gone, the upload is resumed whole."""
    ended, before = _ended_with_leftovers(conn, dsn, own, parallel, monkeypatch)
    worker = Worker(dsn, own, once=True)
    worker._connect()
    try:
        assert worker._control is not None
        claimed = db_rows(worker._control, queries.STORAGE_DELETIONS_CLAIM,
                          {"limit": 100, "hold": "5 minutes"})
        assert {r["job_id"] for r in claimed} == {ended}
        assert scalar(conn, "SELECT pgjobs.retry(%s)", (ended,))
        assert queued_leftovers(conn, ended) == []  # the retry dropped them
        assert worker._remove_claimed(claimed) == 0
    finally:
        worker._close()
    assert of(ended, staged(own)) == before
    assert job(conn, ended)["status"] == "queued"
    _resumes(conn, dsn, own, ended)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_retry_during_a_removal_is_refused_and_the_job_kept(
        conn: Conn, dsn: str, own: str, parallel: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker holds a row of the export's upload (its removal under way): the
    retry is refused with 55006 and a hint, the job still canceled; once the
    removal is settled, the retry goes through and the export starts its
    upload over."""
    ended, _before = _ended_with_leftovers(conn, dsn, own, parallel, monkeypatch)
    with psycopg.connect(dsn, autocommit=True) as remover:
        claimed = remover.execute(
            "SELECT id FROM pgjobs.claim_storage_deletions(100, '5 minutes', true)").fetchall()
        assert claimed
        with remover.transaction():
            first = claimed[0][0]
            assert remover.execute("SELECT pgjobs.start_storage_deletion(%s)",
                                   (first,)).fetchone() == (True,)
            with pytest.raises(psycopg.errors.ObjectInUse) as refused:
                conn.execute("SELECT pgjobs.retry(%s)", (ended,))
            assert "removing the upload" in str(refused.value)
            diag = refused.value.diag
            assert diag.message_hint and "Retry it" in diag.message_hint
            assert job(conn, ended)["status"] == "canceled"
            remover.execute("SELECT pgjobs.finish_storage_deletion(%s)", (first,))
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (ended,))
    assert queued_leftovers(conn, ended) == []
    _resumes(conn, dsn, own, ended)


def test_a_removal_after_a_retry_finds_nothing_to_remove(
        conn: Conn, dsn: str, own: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """start_storage_deletion of a row whose job was taken back by other means
    (queued again) drops the row and says no; of a row gone, no."""
    ended, before = _ended_with_leftovers(conn, dsn, own, 1, monkeypatch)
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.claim_storage_deletions(100, '5 minutes', true)")]
    assert ids
    conn.execute("UPDATE pgjobs.jobs SET status = 'queued', finished_at = NULL "
                 "WHERE id = %s", (ended,))
    assert [scalar(conn, "SELECT pgjobs.start_storage_deletion(%s)", (i,)) for i in ids] \
        == [False] * len(ids)
    assert queued_leftovers(conn, ended) == []
    assert scalar(conn, "SELECT pgjobs.start_storage_deletion(%s)", (ids[0],)) is False
    assert of(ended, staged(own)) == before


def test_a_worker_pass_still_removes_the_leftovers_of_an_ended_export(
        conn: Conn, dsn: str, own: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ended, _before = _ended_with_leftovers(conn, dsn, own, 2, monkeypatch)
    worker = Worker(dsn, own, once=True)
    worker._connect()
    try:
        assert worker._storage_deletions() >= 1
    finally:
        worker._close()
    assert of(ended, staged(own)) == []
    assert queued_leftovers(conn, ended) == []
