"""An export never writes over an object it did not write.

A single-object export (CSV, JSONL) checks its key once, on its first attempt
(Exporter.check_unclaimed: 42710 when another pgjobs database's job of the
same id left its object there). Its final write was unconditional: an object
created at the key after that check (another database's export of the same
id, anyone) was replaced, and the export succeeded. The final write is now
conditional (``file://``: a hard link, which refuses any name there; S3:
CompleteMultipartUpload with ``If-None-Match: *``): an object found there is
accepted only when it reads back, part by part, as exactly what the job
streamed (an earlier attempt of the job wrote it), and otherwise the job
fails for good with 42710 and a hint, leaving the object as it was.

The cases: the foreign object appears right after the first check, or while
the worker is stopped before it finishes (its checkpoint names the key, so
no attempt checks it again), or after the worker was stopped having streamed
part of the rows; each on ``file://`` and S3 (moto), CSV and gzipped JSONL.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.upload import Upload
from tests.support import make_items, run_export, submit_export

Conn = psycopg.Connection[Any]

THEIRS = b"another database's export, not this job's\n"
STEPS = ["after_check", "before_finish", "mid_stream"]
FORMATS = {"csv": {"format": "csv"}, "jsonl": {"format": "jsonl", "gzip": True},
           "parallel": {"format": "csv", "parallel": 2, "chunk_rows": 40}}


class Killed(KeyboardInterrupt):
    """What no handler of the exporter swallows: the attempt ends, the job released."""


CASES = [(fmt, step) for fmt in sorted(FORMATS) for step in STEPS
         # a parallel export: the foreign object at its final key after the check
         # (its parts are single-object exports, covered by the kill steps above)
         if fmt != "parallel" or step == "after_check"]


@pytest.mark.parametrize(("fmt", "step"), CASES)
@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_foreign_object_at_the_key_is_never_written_over(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, fmt: str, step: str) -> None:
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn)
    options = dict(FORMATS[fmt])
    if step == "mid_stream":
        options["chunk_rows"] = 50
    job = submit_export(conn, "1", {}, options)
    key: list[str] = []
    real_taken = storage.taken

    def appear(uri: str) -> None:
        storage.write(uri, THEIRS)

    def checked(uri: str) -> bool:
        found = real_taken(uri)
        if not key:
            key.append(uri)
            if step == "after_check":
                appear(uri)  # created just after the look, before the write
        return found

    monkeypatch.setattr(storage, "taken", checked)
    if step == "before_finish":
        kinds = _upload_kinds()
        real = {kind: kind.finish for kind in kinds}

        def killed_finish(self: Upload) -> tuple[int, str]:
            raise Killed()

        for kind in kinds:
            monkeypatch.setattr(kind, "finish", killed_finish)
        first = run_export(dsn, job, prefix)
        assert first.status != "succeeded", first
        for kind in kinds:
            monkeypatch.setattr(kind, "finish", real[kind])
        appear(key[0])
    elif step == "mid_stream":
        from pgjobs.poller import export

        real_read = export.Exporter._read_chunk
        calls = {"n": 0}

        def killed_read(self: Any, *args: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                raise Killed()
            return real_read(self, *args)

        monkeypatch.setattr(export.Exporter, "_read_chunk", killed_read)
        first = run_export(dsn, job, prefix)
        assert first.status != "succeeded", first
        monkeypatch.setattr(export.Exporter, "_read_chunk", real_read)
        appear(key[0])
    outcome = run_export(dsn, job, prefix)
    assert storage.read(key[0]) == THEIRS, "the foreign object was written over"
    assert outcome.status == "failed", outcome
    assert outcome.error is not None and "[42710]" in outcome.error, outcome.error
    assert "pgjobs.retry" in outcome.error or "destination" in outcome.error


def _upload_kinds() -> list[type[Upload]]:
    from pgjobs.poller import upload_file, upload_obstore, upload_s3

    return [upload_file.LocalUpload, upload_s3.NativeS3Upload, upload_obstore.StagedUpload]


@pytest.mark.parametrize("store", ["file", "s3"])
def test_the_job_s_own_object_from_an_earlier_attempt_is_accepted(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, store: str) -> None:
    """An attempt that made the object visible and ended before completing the
    job: the next one finds the job's own bytes at the key, refused by the
    conditional write, and completes with them (byte-exact)."""
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn)
    job = submit_export(conn, "1", {}, {"format": "csv"})
    first = run_export(dsn, job, prefix)
    assert first.status == "succeeded" and first.result is not None, first
    conn.execute("UPDATE pgjobs.jobs SET status = 'queued', result = NULL, finished_at = NULL, "
                 "checkpoint = jsonb_build_object('v', checkpoint -> 'v', 'uri', %s::text) "
                 "WHERE id = %s", [first.result["uri"], job])
    again = run_export(dsn, job, prefix)
    assert again.status == "succeeded" and again.result is not None, again
    assert again.result["sha256"] == first.result["sha256"]
    assert len(storage.read(first.result["uri"])) == first.result["bytes"]
