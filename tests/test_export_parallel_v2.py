"""Parallel exports, second round: a retry keeps the parts that succeeded (their
objects untouched) and exports again only those that did not, or whose objects
are gone or changed; the join is checkpointed on file://, S3, GCS and Azure (a
SIGKILL mid-join resumes it, byte-identical, without writing again what was
joined), copies part objects server-side on S3 (UploadPartCopy) and GCS
(compose), and a cancel during it leaves nothing; an administrator's ceiling on
`parallel` holds every submitter."""


from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgjobs.poller import azblob, gcs, join, parallel, storage
from pgjobs.poller import s3client as s3
from pgjobs.poller.export import Outcome
from pgjobs.poller.storage import StorageError
from tests.support import (
    ITEMS_TENANT_1,
    LONG_LEASE,
    MANY_PARTS,
    expire_leases,
    job,
    leftovers,
    make_items,
    object_bytes,
    part_rows,
    plain_copy,
    run_export,
    scalar,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
PID = os.getpid()


def parts_run(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The parts streamed in this process from now on (each claim of one)."""
    ran: list[int] = []
    start = parallel.PartExporter._start

    def spy(self: parallel.PartExporter) -> Outcome:
        ran.append(self.part)
        return start(self)

    monkeypatch.setattr(parallel.PartExporter, "_start", spy)
    return ran


def parts_wait_after_the_first(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """From now on, every part but the first to start waits (60 s at most) for
    the event returned: a test's step that must find the export running."""
    go_on = threading.Event()
    lock = threading.Lock()
    started: list[int] = []
    start = parallel.PartExporter._start

    def held(self: parallel.PartExporter) -> Outcome:
        with lock:
            first = not started
            started.append(self.part)
        if not first:
            go_on.wait(60)
        return start(self)

    monkeypatch.setattr(parallel.PartExporter, "_start", held)
    return go_on


def stamp(uri: str) -> tuple[Any, ...]:
    """What changes when an object is written again: inode and mtime (file://), the
    ETag and modification time (object stores)."""
    if uri.startswith("file://"):
        st = os.stat(uri[len("file://"):])
        return st.st_ino, st.st_mtime_ns, st.st_size
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        head = s3.botocore_client().head_object(Bucket=bucket, Key=key)
        return head["ETag"], head["LastModified"], head["ContentLength"]
    loc = storage.parse(uri)
    meta = storage.obstore.head(storage.store_for(loc), loc.path)
    return meta.get("e_tag"), meta["last_modified"], meta["size"]


STORES = {"file": "local_dir", "s3": "bucket", "gs": "gcs_bucket", "az": "az_container"}


@pytest.fixture(params=["file", "s3", "gs", "az", "memory"])
def where(request: pytest.FixtureRequest) -> str:
    """Every kind of join: file://, S3, GCS and Azure (checkpointed), memory://
    (streamed)."""
    if request.param == "memory":
        # One process serves every test's database: memory:// creates
        # conditionally, so each test has its own prefix (job ids repeat).
        return f"memory:///exports-{uuid.uuid4().hex[:12]}/"
    return str(request.getfixturevalue(STORES[request.param]))


def generation(uri: str) -> int | None:
    """The GCS generation of the object at ``uri`` (None: no object)."""
    loc = storage.parse(uri)
    return gcs.generation(gcs.Store(loc.base.split("://", 1)[1]), loc.path)


def blocks(uri: str) -> tuple[list[str], set[str]]:
    """The Azure blob's committed block ids and its uncommitted ones."""
    return azblob.block_lists(azblob.blob_client(storage.parse(uri)))


# --- a retry keeps what succeeded -------------------------------------------------


def test_retry_keeps_the_parts_that_succeeded(conn: Conn, dsn: str, where: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    finalize = parallel.PartExporter._finalize

    def part_2_refused(self: parallel.PartExporter) -> Outcome:
        if self.part == 2:  # once the others have succeeded
            wait_for(lambda: scalar(conn, "SELECT count(*) FROM pgjobs.export_parts WHERE "
                                    "job_id = %s AND status = 'succeeded'", (job_id,)) == 2,
                     what="parts 1 and 3 to succeed")
            raise StorageError("injected: refused for good", retryable=False)
        return finalize(self)

    with monkeypatch.context() as patch:
        patch.setattr(parallel.PartExporter, "_finalize", part_2_refused)
        assert run_export(dsn, job_id, where).status == "failed"
    before = {p["part"]: p for p in part_rows(conn, job_id)}
    assert before[2]["status"] == "failed"
    kept = [1, 3]
    assert [before[n]["status"] for n in kept] == ["succeeded"] * 2
    stamps = {n: stamp(before[n]["result"]["uri"]) for n in kept}
    at_join: dict[int, tuple[Any, ...]] = {}
    run_join = join.Join.run

    def look(self: join.Join) -> tuple[int, str, int]:
        for n in kept:
            at_join[n] = stamp(before[n]["result"]["uri"])
        return run_join(self)

    monkeypatch.setattr(join.Join, "run", look)
    ran = parts_run(monkeypatch)
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    outcome = run_export(dsn, job_id, where)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert 2 in ran and not set(ran) & set(kept), ran
    assert at_join == stamps  # the parts that had succeeded were not written again
    after = {p["part"]: p for p in part_rows(conn, job_id)}
    for n in kept:
        assert after[n]["attempts"] == before[n]["attempts"]
        assert after[n]["result"] == before[n]["result"]


def test_a_part_that_used_its_attempts_resumes_on_retry(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part failing on transient errors until its attempts are spent keeps its
    upload, as a whole export does: the retry continues it from its checkpoint."""
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2, "max_attempts": 2})
    finalize = parallel.PartExporter._finalize

    def part_2_flaky(self: parallel.PartExporter) -> Outcome:
        if self.part == 2:  # storage fails making the part's object, once finalizing
            # Not before part 1 has ended: the job fails with part 2's last
            # attempt, and on a loaded machine part 1 was then still running,
            # so the retry ran it again (a race, not the resume under test).
            with psycopg.connect(dsn, autocommit=True) as other:
                wait_for(lambda: part_rows(other, job_id)[0]["status"] == "succeeded",
                         what="part 1 to succeed")
            self.state["phase"] = "finalizing"
            assert self.control.heartbeat(done=self.state["rows"], checkpoint=self.checkpoint())
            raise StorageError("injected: storage hiccup", retryable=True)
        return finalize(self)

    with monkeypatch.context() as patch:
        patch.setattr(parallel.PartExporter, "_finalize", part_2_flaky)
        assert run_export(dsn, job_id, local_dir).status == "failed"
    stuck = part_rows(conn, job_id)[1]
    assert stuck["status"] == "failed" and stuck["attempts"] == 2
    written = int(stuck["checkpoint"]["parts"])
    assert written > 0
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    ran = parts_run(monkeypatch)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert ran == [2]
    history = part_rows(conn, job_id)[1]["checkpoint"]["history"]
    # Continued at its last part, finalizing: not started over from its first row.
    assert history[-1]["part"] == written and history[-1]["phase"] == "finalizing", history


def test_retry_after_a_cancel_exports_again_what_the_cancel_removed(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    # The parts after the first wait for the cancel: the export must still be
    # running when it comes. Slow parts alone left that to scheduling, and on
    # a loaded CI machine the whole export ended first (cancel returned false).
    canceled = parts_wait_after_the_first(monkeypatch)
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, local_dir)))
    thread.start()
    try:
        wait_for(lambda: any(p["status"] == "succeeded" for p in part_rows(conn, job_id)),
                 what="a part to succeed")
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    finally:
        canceled.set()
    thread.join(timeout=60)
    assert box[0].status == "canceled"
    assert leftovers(local_dir, set()) == []  # the succeeded part's object went too
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "")
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert job(conn, job_id)["attempts"] == 1  # found before the join, in this attempt


@pytest.mark.parametrize("damage", ["deleted", "truncated", "altered"])
def test_a_part_object_changed_before_the_join_is_exported_again_alone(
        conn: Conn, dsn: str, where: str, damage: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the parts' end and the join, part 2's object is damaged: the join
    finds it (a missing object at once, a changed one when the object reads back),
    queues part 2 alone again, and the export completes in the same attempt."""
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    run_join = join.Join.run
    damaged: list[str] = []

    def damage_part_2(self: join.Join) -> tuple[int, str, int]:
        if not damaged:
            uri = str(self.results[1]["uri"])
            damaged.append(uri)
            data = storage.read(uri)
            if damage == "deleted":
                storage.delete(uri)
            else:
                storage.delete(uri)
                storage.write(uri, data[:-1] if damage == "truncated"
                              else data[:10] + bytes([data[10] ^ 1]) + data[11:])
        return run_join(self)

    monkeypatch.setattr(join.Join, "run", damage_part_2)
    ran = parts_run(monkeypatch)
    outcome = run_export(dsn, job_id, where)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert sorted(ran) == [1, 2, 2, 3]
    assert job(conn, job_id)["attempts"] == 1
    assert leftovers(where, {outcome.result["uri"]}) == []


# --- the join: checkpointed, server-side on S3 -----------------------------------


def test_join_plan_copies_what_it_can_and_every_step_but_the_last_is_big_enough() -> None:
    cases = [[0], [3], [10], [3, 3], [3, 10], [10, 3], [4, 4, 4, 4], [10, 10, 2], [1, 25, 1],
             [0, 0, 7, 0], [6, 1, 1, 1, 9], [41], [5, 5]]
    for sizes in cases:
        steps = join.plan(sizes, minimum=5, maximum=12)
        flat = [seg for step in steps for seg in step]
        # In order, every byte once.
        expected = [(i, s) for i, n in enumerate(sizes) for s in range(n)]
        assert [(i, b) for i, a, e in flat for b in range(a, e)] == expected, sizes
        for step in steps[:-1]:
            assert sum(e - a for _, a, e in step) >= 5, (sizes, steps)
        for step in steps:
            if join.copied(step, minimum=5):
                assert step[0][2] - step[0][1] <= 12
        # Nothing read that could have been copied: a read step holds at most
        # one object's tail and the head of the objects after it.
        for step in steps:
            if not join.copied(step, minimum=5):
                assert sum(e - a for _, a, e in step) < 5 + 5, (sizes, steps)
    assert [join.copied(s, 5) for s in join.plan([10, 10], 5, 12)] == [True, True]
    assert len(join.plan([30], 5, 12)) == 3  # above the copy limit: ranges


def test_s3_join_copies_the_parts_server_side(conn: Conn, dsn: str, bucket: str, big: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    one = run_export(dsn, submit_export(conn, "1", {}, {}, target="big"), bucket)
    assert one.result is not None
    copies: list[int] = []
    joined: list[int] = []
    copy, put = s3.Client.upload_part_copy, s3.Client.upload_part

    def count_copy(self: s3.Client, key: str, upload_id: str, number: int, source: str,
                   start: int, end: int) -> str:
        copies.append(end - start)
        return copy(self, key, upload_id, number, source, start, end)

    def count_put(self: s3.Client, key: str, upload_id: str, number: int,
                  data: bytes | bytearray, sha256: str | None = None) -> tuple[str, str]:
        if ".part" not in key:
            joined.append(len(data))
        return put(self, key, upload_id, number, data, sha256)

    monkeypatch.setattr(s3.Client, "upload_part_copy", count_copy)
    monkeypatch.setattr(s3.Client, "upload_part", count_put)
    many = run_export(dsn, submit_export(conn, "1", {}, {"parallel": 2}, target="big"), bucket)
    assert many.status == "succeeded", many.error
    assert many.result is not None
    assert object_bytes(many.result) == object_bytes(one.result)
    assert len(copies) == 2 and joined == []  # no byte through the worker
    assert sum(copies) == many.result["bytes"]
    assert leftovers(bucket, {one.result["uri"], many.result["uri"]}) == []


@pytest.mark.parametrize("store", ["file", "s3", "gs", "az"])
def test_sigkill_mid_join_resumes_it(conn: Conn, dsn: str, store: str,
                                     request: pytest.FixtureRequest) -> None:
    where = str(request.getfixturevalue(STORES[store]))
    if store == "s3":
        request.getfixturevalue("big")
        options: dict[str, Any] = {"parallel": 3}
        target = "big"
    else:
        make_items(conn, rows=900)
        options = {**MANY_PARTS, "parallel": 3}
        target = "items"
    one = run_export(dsn, submit_export(conn, "1", {}, {}, target=target), where)
    assert one.result is not None
    job_id = submit_export(conn, "1", {}, options, target=target)

    def joined() -> int:
        ck = job(conn, job_id)["checkpoint"] or {}
        return int((ck.get("join") or {}).get("done", 0))

    first = start_worker(dsn, where, "--once", "--lease", LONG_LEASE, delays="join=3")
    try:
        wait_for(lambda: joined() >= 1, timeout=120, what="a step of the join checkpointed")
    finally:
        first.kill()
        first.communicate(timeout=10)
    done_before = joined()
    parts_before = [(p["attempts"], p["result"]) for p in part_rows(conn, job_id)]
    uri = job(conn, job_id)["checkpoint"]["uri"]
    if store == "gs":  # three parts: one compose, done before the kill
        composed = generation(uri)
        assert composed is not None
    if store == "az":  # what the killed worker staged, checkpointed or not
        staged = len(blocks(uri)[1])
        assert staged >= done_before
    expire_leases(conn, job_id)
    second = start_worker(dsn, where, "--once")
    _, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == object_bytes(one.result)  # bytes and sha256
    history = row["checkpoint"]["join"]["history"]
    # The new owner went on from the steps checkpointed, not from the start.
    assert len(history) >= 2 and history[-1]["done"] == done_before >= 1, history
    # and exported no part again,
    assert [(p["attempts"], p["result"]) for p in part_rows(conn, job_id)] == parts_before
    assert leftovers(where, {one.result["uri"], row["result"]["uri"]}) == []
    # nor wrote again what the killed worker had joined:
    if store == "gs":  # no compose: the object is the one composed before the kill
        assert history[-1].get("writes", 0) == 0, history
        assert generation(uri) == composed
    if store == "az":  # only the blocks Azure did not hold yet
        committed = blocks(uri)[0]
        assert len(committed) > staged
        assert history[-1]["writes"] == len(committed) - staged, (history, staged)


@pytest.mark.parametrize("lost", [False, True], ids=["kept", "lost"])
@pytest.mark.parametrize("store", ["gs", "az"])
def test_an_interrupted_join_goes_on_from_its_checkpoint(
        conn: Conn, dsn: str, store: str, lost: bool, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempt dies after two of the join's writes (compose calls in a tree on
    GCS, here of 2 sources a call; staged blocks on Azure); the next attempt makes
    only the others, and the object is the parallel: 1 export's bytes. ``lost``:
    meanwhile the first write is undone (its intermediate object deleted; the
    blob committed with the first block only, which drops the second): the next
    attempt makes that again too, and nothing else it had."""
    where = str(request.getfixturevalue(STORES[store]))
    make_items(conn, rows=600)
    one = run_export(dsn, submit_export(conn, "1", {}, dict(MANY_PARTS)), where)
    assert one.result is not None
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 5})
    attempts: list[list[str]] = [[]]  # what each attempt of the join wrote

    def note(what: str) -> None:
        if len(attempts) == 1 and len(attempts[0]) == 2:
            raise RuntimeError("injected: the worker stops mid-join")
        attempts[-1].append(what)

    if store == "gs":
        monkeypatch.setattr(gcs, "COMPOSE_MAX", 2)  # 5 parts: 4 calls, the last the object
        compose_one = gcs.compose_one

        def spy_compose(bucket: gcs.Store, sources: list[str], target: str,
                        **options: Any) -> int:
            name = target.rsplit("/", 1)[-1]
            if "/join/" in target or (".part" not in name and "compose-" not in name):
                note(target)  # the join's, not a part's own upload
            return compose_one(bucket, sources, target, **options)

        monkeypatch.setattr(gcs, "compose_one", spy_compose)
    else:
        stage = azblob.stage

        def spy_stage(blob: Any, block: str, data: bytes | bytearray, what: str) -> None:
            note(block)
            stage(blob, block, data, what)

        monkeypatch.setattr(azblob, "stage", spy_stage)
    first = run_export(dsn, job_id, where)
    assert first.status == "retrying" and "mid-join" in (first.error or ""), first
    assert len(attempts[0]) == 2
    attempts.append([])
    uri = job(conn, job_id)["checkpoint"]["uri"]
    if lost and store == "gs":
        storage.delete(f"{storage.parse(uri).base}/{attempts[0][0]}")
    if lost and store == "az":
        blob = azblob.blob_client(storage.parse(uri))
        azblob.commit(blob, attempts[0][:1], uri)
        assert blocks(uri) == (attempts[0][:1], set())
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    ran = parts_run(monkeypatch)
    outcome = run_export(dsn, job_id, where)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == object_bytes(one.result)
    assert ran == []  # no part exported again
    history = job(conn, job_id)["checkpoint"]["join"]["history"]
    assert history[-1]["done"] == 2 and history[-1]["writes"] == len(attempts[1]), history
    # What the second attempt had to make again: the deleted intermediate object,
    # the block that Azure dropped.
    again = (attempts[0][:1] if store == "gs" else attempts[0][1:]) if lost else []
    if store == "gs":
        steps = gcs.compose_plan([f"p{n}" for n in range(5)], "x", "s/", fan_in=2)
        assert len(steps) == 4
        assert attempts[1][:len(again)] == again
        assert len(attempts[1]) == 2 + len(again)
        assert attempts[1][-1] == storage.parse(uri).path
    else:
        committed = blocks(uri)[0]
        assert sorted(attempts[1]) == sorted(set(committed) - set(attempts[0]) | set(again))
    assert set(attempts[0]) & set(attempts[1]) == set(again)  # nothing else made twice
    assert leftovers(where, {one.result["uri"], uri}) == []


@pytest.mark.parametrize("store", ["file", "s3", "gs", "az"])
def test_cancel_during_the_join_leaves_nothing(conn: Conn, dsn: str, store: str,
                                               request: pytest.FixtureRequest,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    where = str(request.getfixturevalue(STORES[store]))
    if store == "s3":
        request.getfixturevalue("big")
        job_id = submit_export(conn, "1", {}, {"parallel": 3}, target="big")
    else:
        make_items(conn, rows=600)
        job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "join=1")
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, where)))
    thread.start()
    wait_for(lambda: ((job(conn, job_id)["checkpoint"] or {}).get("join") or {}).get("done"),
             timeout=120, what="the join to start")
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert box[0].status == "canceled", box
    assert job(conn, job_id)["status"] == "canceled"
    assert leftovers(where, set()) == []  # no object, no join file, no part objects
    if store == "s3":
        assert s3.Client(where.split("/")[2]).list_uploads("") == []
    if store == "az":  # nor blocks staged on the object's blob
        assert blocks(str(job(conn, job_id)["checkpoint"]["uri"])) == ([], set())


# --- the administrator's ceiling --------------------------------------------------


@pytest.fixture
def client_role(conn: Conn) -> Iterator[str]:
    make_items(conn, rows=30)
    role = f"pgjobs_par_client_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT ON items TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_the_ceiling_holds_clients_and_administrators(conn: Conn, dsn: str,
                                                      client_role: str) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.main import main

    assert scalar(conn, "SELECT pgjobs.set_defaults('{\"max_parallel\": 4}')")[
        "max_parallel"] == 4
    for role in (client_role, None):
        if role:
            conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            submit_export(conn, "1", {}, {"parallel": 5})
        assert "ceiling of 4" in str(caught.value)
        hint = caught.value.diag.message_hint or ""
        assert '{"parallel": 4}' in hint and "max_parallel" in hint
        assert job(conn, submit_export(conn, "1", {}, {"parallel": 4}))["payload"][
            "parallel"] == 4
        conn.execute("RESET ROLE")
    refused = CliRunner().invoke(main, ["--dsn", dsn, "export", "items", "--scope", "1",
                                        "--parallel", "5"])
    assert refused.exit_code == 2 and "max_parallel" in refused.output, refused.output
    assert "Traceback" not in refused.output
    conn.execute(f"SET ROLE {client_role}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.set_defaults('{\"max_parallel\": 64}')")
    conn.execute("RESET ROLE")
    for bad in ("0", "65", "2.5", '"8"', "true"):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (f'{{"max_parallel": {bad}}}',))
    assert scalar(conn, "SELECT pgjobs._max_parallel()") == 4  # nothing stored by a bad call
    # null goes back to the built-in ceiling, the option's own bound
    assert "max_parallel" not in scalar(conn, "SELECT pgjobs.set_defaults("
                                              "'{\"max_parallel\": null}')")
    submit_export(conn, "1", {}, {"parallel": 64})
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        submit_export(conn, "1", {}, {"parallel": 65})


def test_a_ceiling_lowered_after_the_submit_holds_at_the_split(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 8})
    conn.execute("SELECT pgjobs.set_defaults('{\"max_parallel\": 2}')")
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert len(part_rows(conn, job_id)) == 2


def test_memory_joins_by_streaming(conn: Conn, dsn: str) -> None:
    """memory:// is process-local (nothing outlives the worker to resume): the parts
    are streamed into the object, the same bytes as parallel: 1."""
    where = f"memory:///exports-{uuid.uuid4().hex[:12]}/"
    make_items(conn, rows=300)
    one = run_export(dsn, submit_export(conn, "1", {}, dict(MANY_PARTS)), where)
    many = run_export(dsn, submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2}), where)
    assert one.result is not None and many.result is not None, many.error
    assert object_bytes(many.result) == object_bytes(one.result)
