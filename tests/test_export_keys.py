"""Where an export without an object name goes: ``{target}/{scope}/{job}.{fmt}``
under the worker's storage, each name made a path segment one-to-one, so that
two tenants (or two targets) never share a folder; an export the previous
release started finishes at the key it started with."""

from __future__ import annotations

import random
import re
from typing import Any

import psycopg
import pytest

from pgjobs.poller import export, storage
from pgjobs.poller.export import object_key, path_segment
from tests.support import build_target, expire_lease, job, run_export, submit_export

Conn = psycopg.Connection[Any]

# Names the previous mapping (`_` for every run of other characters, a leading
# `.` made `_`, cut at 120 characters) gave one folder, in groups.
COLLIDING = [
    ["a/b", "a_b", "a b", "a//b", "a\\b", "a%2Fb", "a=2Fb", "a__b"],
    [".", "", "_", "..", "=", "%", "/", "._"],
    ["x" * 120 + "1", "x" * 120 + "2", "x" * 120, "x" * 121, "x" * 300],
    ["é", "è", "_", "\u00e9\u0301", "\U0001f600"],
    ["Acme", "acme"],
    [".hidden", "_hidden", "=2Ehidden"],
    ["é" * 60 + "a", "é" * 60 + "b", "é" * 61],
]
SEGMENT = re.compile(r"[A-Za-z0-9._=-]{1,120}")


def _all_names() -> list[str]:
    names = [n for group in COLLIDING for n in group]
    rng = random.Random(7)
    alphabet = "aA0._-=%/ \\é\u2028\x01?#~"
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
              for _ in range(3000)]
    names += ["".join(rng.choice("ab/_") for _ in range(rng.randrange(100, 140)))
              for _ in range(300)]
    return list(dict.fromkeys(names))


def test_path_segments_are_one_to_one_and_safe() -> None:
    names = _all_names()
    segments = {path_segment(n): n for n in names}
    assert len(segments) == len(names), "two names share a segment"
    for segment in segments:
        assert SEGMENT.fullmatch(segment), segment
        assert not segment.startswith("."), segment
        assert "%" not in segment and "/" not in segment


def test_safe_names_keep_their_text() -> None:
    """Names of safe characters (integer scopes, uuids, table names) keep the
    folder they had."""
    for name in ["1", "-3", "items", "public.items", "user_table_rows",
                 "8c1f0a2e-5b7d-4c1e-9f3a-0d2b6e4a1c77", "t-1.x_y", "x" * 120]:
        assert path_segment(name) == name


@pytest.mark.parametrize("group", COLLIDING, ids=range(len(COLLIDING)))
def test_keys_of_distinct_names_differ(group: list[str]) -> None:
    """Scopes and targets alike, for every format's key (Parquet folders, parallel
    parts and import rejects derive from object_key)."""
    for fmt, gz in [("csv", False), ("jsonl", True), ("parquet", False), ("rejects.jsonl", False)]:
        by_scope = {object_key("items", s, 7, fmt, gz) for s in group}
        by_target = {object_key(t, "1", 7, fmt, gz) for t in group}
        assert len(by_scope) == len(group) and len(by_target) == len(group)
    prefix = "s3://bucket/exports"
    for name in group:
        uri = storage.object_location(prefix, object_key(name, name, 7, "csv", False)).uri
        assert storage.within(uri, prefix), uri  # the worker's own check passes


def _text_scoped(conn: Conn, scopes: list[str]) -> None:
    build_target(conn, "notes", "id bigint PRIMARY KEY, tenant text NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour', body text",
                 scope="tenant")
    for i, scope in enumerate(scopes):
        conn.execute("INSERT INTO notes (id, tenant, body) SELECT %s * 100 + g, %s, %s "
                     "FROM generate_series(1, 20) g", (i, scope, f"of {scope!r}"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tenants_get_their_own_folders(conn: Conn, dsn: str, local_dir: str, fmt: str) -> None:
    """Repro: tenants `a/b` and `a_b` (or two long names alike in their first
    120 characters) exported to one folder; each now has its own, holding only
    its rows."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    scopes = ["a/b", "a_b", "L" * 130 + "1", "L" * 130 + "2"]
    _text_scoped(conn, scopes)
    folders: dict[str, str] = {}
    for scope in scopes:
        job_id = submit_export(conn, scope, {}, {"format": fmt}, target="notes")
        outcome = run_export(dsn, job_id, local_dir)
        assert outcome.status == "succeeded", outcome.error
        assert outcome.result is not None
        uri = str(outcome.result["uri"])
        assert storage.within(uri, local_dir)
        folder = uri.rstrip("/").rsplit("/", 1)[0]  # the job's object or folder in it
        assert folder.endswith("/" + path_segment(scope))
        folders[scope] = folder
    assert len(set(folders.values())) == len(scopes), folders
    for scope in scopes[:2]:
        job_id = submit_export(conn, scope, {}, {"format": "csv"}, target="notes")
        outcome = run_export(dsn, job_id, local_dir)
        assert outcome.result is not None
        with open(storage.parse(outcome.result["uri"]).path, encoding="utf-8") as f:
            body = f.read()
        assert f"of {scope!r}" in body and body.count("\n") == 21
        other = scopes[1] if scope == scopes[0] else scopes[0]
        assert f"of {other!r}" not in body


def _previous_object_key(target: str, scope: str, job_id: int, fmt: str, gzip: bool) -> str:
    """The key as the previous release computed it (lossy)."""
    def safe(text: str) -> str:
        cleaned = re.sub(r"[^A-Za-z0-9._=-]+", "_", text)[:120] or "_"
        return "_" + cleaned[1:] if cleaned.startswith(".") else cleaned
    return f"{safe(target)}/{safe(scope)}/{job_id}.{fmt}" + (".gz" if gzip else "")


def test_export_started_before_the_upgrade_finishes_at_its_key(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export whose first attempt (the previous release: the old key) lost its
    worker mid-stream is resumed by this release at the key its checkpoint
    holds, its parts kept, never at the new key."""
    _text_scoped(conn, ["a/b"])
    conn.execute("INSERT INTO notes (id, tenant, body) SELECT 1000 + g, 'a/b', repeat('z', 300) "
                 "FROM generate_series(1, 200) g")
    job_id = submit_export(conn, "a/b", {}, {"chunk_rows": 5, "part_size": 1024},
                           target="notes")
    monkeypatch.setattr(export, "object_key", _previous_object_key)
    real = export._Control.heartbeat

    def dies_after_three_parts(self: Any, done: int | None = None,
                               checkpoint: dict[str, Any] | None = None, **kw: Any) -> bool:
        if checkpoint is not None and int(checkpoint.get("parts", 0)) >= 3:
            return False  # the worker is gone: its lease is lost
        return bool(real(self, done, checkpoint, **kw))

    monkeypatch.setattr(export._Control, "heartbeat", dies_after_three_parts)
    first = run_export(dsn, job_id, local_dir)
    assert first.status == "lost", first
    old_uri = storage.object_location(local_dir, _previous_object_key(
        "notes", "a/b", job_id, "csv", False)).uri
    assert job(conn, job_id)["checkpoint"]["uri"] == old_uri
    monkeypatch.undo()
    expire_lease(conn, job_id)

    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None and outcome.result["uri"] == old_uri
    history = job(conn, job_id)["checkpoint"]["history"]
    assert len(history) >= 2 and history[-1]["part"] > 0, history  # continued
    new_uri = storage.object_location(local_dir, object_key("notes", "a/b", job_id, "csv",
                                                            False)).uri
    assert new_uri != old_uri
    with open(storage.parse(old_uri).path, encoding="utf-8") as f:
        assert f.read().count("\n") == 221
