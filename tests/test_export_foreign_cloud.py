"""GCS and Azure exports never write over an object created at the key after
the export's last look.

The final write of a ``gs://`` export (the compose that makes the object, or
the upload of an empty one), of an ``az://`` one (Put Block List) and of a
parallel export's join there was preceded by a look (``storage.taken``) and
was itself unconditional: an object created at the key between that look and
the write (another pgjobs database's export of the same id, anyone) was
replaced. The write is now conditional on the store's own terms (GCS
``ifGenerationMatch=0``, Azure ``If-None-Match: *``): it refuses the object,
which is then accepted only as exactly the job's bytes, and otherwise the job
fails for good (42710), the object left as it was. A Parquet file is written
by ``storage.create`` (a conditional PUT) on both stores.

Each case makes the look miss the object (it is created just after every
look answers), so only the conditional write stands between it and the
export; on gcp-storage-emulator and Azurite (each skips when not installed),
for CSV, gzipped JSON Lines, a parallel CSV export (its join) and Parquet.

Azurite honours ``If-None-Match: *`` on Put Block List and Put Blob.
gcp-storage-emulator (2024.x) ignores ``ifGenerationMatch`` altogether (it
writes over the object): on ``gs://`` the test checks that every write that
makes an export's object carries ``ifGenerationMatch=0``, and answers such a
write as GCS does (``412``) when the object exists (:func:`_gcs_conditions`),
so what is tested is the request and the handling of GCS's refusal.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from tests.support import make_items, run_export, submit_export

Conn = psycopg.Connection[Any]

THEIRS = b"another database's export, not this job's\n"
FORMATS = {"csv": {"format": "csv"}, "jsonl": {"format": "jsonl", "gzip": True},
           "parallel": {"format": "csv", "parallel": 2, "chunk_rows": 40},
           "parquet": {"format": "parquet", "chunk_rows": 40, "part_size": 4096}}
STORES = {"gs": "gcs_bucket", "az": "az_container"}


def _gcs_conditions(monkeypatch: pytest.MonkeyPatch, placed: list[str]) -> list[str]:
    """Google's client as GCS answers it: a compose or upload with
    ``if_generation_match=0`` at a name that holds an object is refused
    (``412``), which the emulator does not do. Returns the names written
    without that condition among ``placed``'s (the test's objects)."""
    from google.api_core import exceptions as ge
    from google.cloud.storage import Blob

    unconditional: list[str] = []
    compose, upload = Blob.compose, Blob.upload_from_string

    def check(blob: Blob, options: dict[str, Any]) -> None:
        uri = f"gs://{blob.bucket.name}/{blob.name}"
        if uri in placed and options.get("if_generation_match") != 0:
            unconditional.append(uri)
        if options.get("if_generation_match") == 0 and blob.bucket.get_blob(blob.name):
            raise ge.PreconditionFailed(f"{uri}: conditionNotMet")

    def checked_compose(self: Blob, sources: Any, *args: Any, **options: Any) -> Any:
        check(self, options)
        return compose(self, sources, *args, **options)

    def checked_upload(self: Blob, data: Any, *args: Any, **options: Any) -> Any:
        check(self, options)
        return upload(self, data, *args, **options)

    monkeypatch.setattr(Blob, "compose", checked_compose)
    monkeypatch.setattr(Blob, "upload_from_string", checked_upload)
    return unconditional


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("store", sorted(STORES))
def test_an_object_created_after_the_last_look_is_never_written_over(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    prefix = request.getfixturevalue(STORES[store])
    make_items(conn, rows=200)
    job_id = submit_export(conn, "1", {}, FORMATS[fmt])
    real = storage.taken
    placed: list[str] = []

    def taken(uri: str) -> bool:
        found = real(uri)
        # The object the export makes (a parallel one's joined object, not
        # its parts'; a Parquet export's second file): created by another
        # just after the look, which saw nothing.
        wanted = (uri.endswith("00001.parquet") if fmt == "parquet"
                  else ".part-" not in uri and "/part-" not in uri)
        if not found and wanted and not placed:
            storage.write(uri, THEIRS)
            placed.append(uri)
            return False
        if placed and uri == placed[0]:
            return False  # every later look misses it too
        return found

    monkeypatch.setattr(storage, "taken", taken)
    unconditional = _gcs_conditions(monkeypatch, placed) if store == "gs" else []
    outcome = run_export(dsn, job_id, prefix)
    assert placed, "the export never looked at its key"
    assert not unconditional, f"written without ifGenerationMatch=0: {unconditional}"
    assert storage.read(placed[0]) == THEIRS, "the object was written over"
    assert outcome.status == "failed", outcome
    assert outcome.error is not None and "[42710]" in outcome.error, outcome.error
