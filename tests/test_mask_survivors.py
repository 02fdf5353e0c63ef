"""A delete stores what it can leave of its scope as data (pgjobs.jobs.survivors,
migration 0016): no filter, its horizon and how the horizon's literal is
written, its excluded keys. The read path's short cut past a whole-scope
delete (pgjobs._mask_candidates) is built from those fields; the parse of the
stored predicate's text stays only for deletes submitted before (survivors
NULL), and both must agree.

- For every key type, scope type, created_at type (timestamptz, and timestamp
  in a registered time zone), exclusion list (keys needing quotes in an array
  literal, keys of no row) and filter, the condition built from the fields is
  byte-identical to the one parsed from the predicate.
- The property test of tests/test_mask_fast_path.py (reads in the middle of
  the jobs equal the jobs' result) runs again with every delete made to look
  submitted before 0016: the old path stays exact.
- What narrows nothing: a filter (even one that matches every row), a horizon
  of -infinity (a prepared transaction at the submit), other kinds.
- The fields name the columns the predicate names: a later register_target
  that names another created_at column does not change the short cut (it is
  refused while the delete is pending, since round 30).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import tests.test_mask_fast_path as fast
from tests.support import (
    Conn,
    Target,
    insert_row,
    make_rows_target,
    run_pages,
    scalar,
    seed,
    submit_delete,
    visible_keys,
)


def candidates(conn: Conn, t: Target, scope: str) -> str:
    return str(scalar(conn, "SELECT pgjobs._mask_candidates(%s::regclass, %s)", (t.name, scope)))


def parsed_candidates(conn: Conn, t: Target, scope: str) -> str:
    """The condition as a release before 0016 read it: from the predicate's
    text (survivors cleared in a transaction rolled back afterwards)."""
    with conn.transaction(force_rollback=True):
        conn.execute("UPDATE pgjobs.jobs SET survivors = NULL WHERE target = %s::regclass",
                     (t.name,))
        return candidates(conn, t, scope)


def survivors(conn: Conn, job_id: int) -> dict[str, Any]:
    value = scalar(conn, "SELECT survivors FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert isinstance(value, dict)
    return value


SHAPES = [("bigint", "int", "timestamptz"), ("text", "text", "timestamptz"),
          ("uuid", "int", "timestamp"), ("bigint", "text", "timestamp"),
          ("text", "int", "timestamp")]


@pytest.mark.parametrize(("key_type", "scope_type", "created_at"), SHAPES,
                         ids=["-".join(s) for s in SHAPES])
def test_the_stored_fields_build_the_condition_the_predicate_parses_to(
        conn: Conn, key_type: str, scope_type: str, created_at: str) -> None:
    rng = random.Random(f"{key_type}{scope_type}{created_at}")
    t = fast.build(conn, key_type, scope_type, created_at)
    scope = t.scope(1)
    canonical = scalar(conn, "SELECT pgjobs._canonical_scope(r, %s) FROM pgjobs.target_registry r"
                             " WHERE r.target = %s::regclass", (scope, t.name))
    in_scope = sorted(fast.keys_of(conn, t, scope))
    odd = {"text": ['a "quoted", {braced} key', "back\\slash", "it's", " spaced ", "NULL"],
           "uuid": ["00000000-0000-0000-0000-000000000000",
                    "{12345678-1234-1234-1234-123456789abc}"],
           "bigint": ["+7", "0042", "999999"]}[key_type]
    seen_shortcut = 0
    for round_ in range(8):
        exclude = rng.sample(in_scope, rng.randrange(0, 4)) + rng.sample(odd, rng.randrange(0, 3))
        filter_: dict[str, Any] = rng.choice([{}, {}, {}, {"n": 1}, {"k": {"$exists": True}}])
        # (odd: spellings of keys of no row, excluded on purpose.)
        job_id = submit_delete(conn, t, scope, filter_, exclude, {"allow_unknown_fields": True,
                                                                  "allow_unknown_keys": True})
        fields = survivors(conn, job_id)
        assert fields["whole_scope"] is (filter_ == {})
        assert fields["created_at_type"] == created_at
        assert fields["time_zone"] == ("Europe/Paris" if created_at == "timestamp" else "UTC")
        assert fields["key_column"] == "id" and fields["created_at_column"] == "created_at"
        # The exclusions in their canonical text (pgjobs._canonical_text).
        assert len(fields["exclude"]) == len(exclude)
        built = candidates(conn, t, canonical)
        assert built == parsed_candidates(conn, t, canonical), (round_, exclude, filter_)
        seen_shortcut += built != "true"
        if rng.random() < 0.5:  # sometimes several pending deletes at once
            for old in conn.execute("SELECT id FROM pgjobs.jobs WHERE status = 'queued'"
                                    " AND id <> %s", (job_id,)).fetchall():
                conn.execute("SELECT pgjobs.cancel(%s)", (old[0],))
    assert seen_shortcut > 0


def test_a_filter_narrows_nothing_even_when_it_matches_every_row(conn: Conn) -> None:
    t = fast.build(conn, "bigint", "int", "timestamptz")
    job_id = submit_delete(conn, t, "1", {"n": {"$exists": True}}, [], {})
    assert survivors(conn, job_id)["whole_scope"] is False
    assert candidates(conn, t, "1") == "true"
    submit_delete(conn, t, "1", {}, [], {})
    # The later whole-scope delete narrows the reads; the filtered one adds nothing.
    at_or_after = "created_at OPERATOR(pg_catalog.>=) "
    assert candidates(conn, t, "1").startswith("(" + at_or_after)
    assert " AND " not in candidates(conn, t, "1").replace(at_or_after, "")


def test_a_horizon_of_minus_infinity_narrows_nothing(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A prepared transaction at the submit: no start time bounds what it wrote,
    so the horizon is -infinity and only xmin decides (pgjobs._cutoff_clause)."""
    t = fast.build(conn, "bigint", "int", "timestamptz")
    other = make_conn(autocommit=False)
    insert_row(other, t, "1", n=4)
    gid = f"pgjobs-survivors-{id(other)}"
    other.execute(f"PREPARE TRANSACTION '{gid}'")
    try:
        job_id = submit_delete(conn, t, "1", {}, ["5"], {"allow_unknown_keys": True})
    finally:
        conn.execute(f"ROLLBACK PREPARED '{gid}'")
    fields = survivors(conn, job_id)
    assert fields["whole_scope"] is True and fields["horizon"] == "-infinity"
    assert candidates(conn, t, "1") == "true"
    assert parsed_candidates(conn, t, "1") == "true"
    # ... and the reads stay exact without the short cut.
    during = fast.reads(conn, t, "1", 9)
    assert run_pages(conn, job_id)[-1] == "done"
    assert during == fast.final_reads(conn, t, "1")


def test_other_kinds_store_nothing(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 30)
    backfill = scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}',"
                            " '{\"n\": 0}')")
    assert scalar(conn, "SELECT survivors FROM pgjobs.jobs WHERE id = %s", (backfill,)) is None
    assert candidates(conn, t, "1") == "true"


def test_the_fields_keep_the_columns_the_predicate_names(conn: Conn) -> None:
    """Registering the target again with another created_at column while a
    delete is pending is refused (55006, since round 30: a job runs against
    the columns it was submitted under; tests/test_trust_registration_change.py);
    the target's short cut still tests the column the job's predicate tests: a
    row the job spares (a new `created_at`, an old `born`) stays visible."""
    t = fast.build(conn, "bigint", "int", "timestamptz")
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN born timestamptz")
    conn.execute("UPDATE user_table_rows SET born = '2000-01-01'")
    job_id = submit_delete(conn, t, "1", {}, [], {})
    late = insert_row(conn, t, "1", n=1)
    conn.execute("UPDATE user_table_rows SET born = '2000-01-01' WHERE id = %s", (int(late),))
    with pytest.raises(psycopg.errors.ObjectInUse):
        conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                     " 'born', 'data')")
    assert "created_at OPERATOR(pg_catalog.>=) " in candidates(conn, t, "1")
    during = visible_keys(conn, t, "1")
    assert late in during
    assert run_pages(conn, job_id)[-1] == "done"
    assert sorted(during) == sorted(visible_keys(conn, t, "1"))
    assert set(during) == fast.keys_of(conn, t, "1")


def _submit_the_old_way(conn: Conn, target: Target, scope: str,
                        filter_: dict[str, Any] | None = None, exclude: list[str] | None = None,
                        options: dict[str, Any] | None = None) -> int:
    """submit_delete, then the row as a release before 0016 left it."""
    job_id = submit_delete(conn, target, scope, filter_, exclude, options)
    conn.execute("UPDATE pgjobs.jobs SET survivors = NULL WHERE id = %s", (job_id,))
    return job_id


@pytest.mark.parametrize(("seed_", "key_type", "scope_type", "created_at"), fast.CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in fast.CASES])
def test_reads_stay_exact_for_deletes_submitted_before_the_fields(
        conn: Conn, make_conn: Callable[..., Conn], monkeypatch: pytest.MonkeyPatch,
        seed_: int, key_type: str, scope_type: str, created_at: str) -> None:
    monkeypatch.setattr(fast, "submit_delete", _submit_the_old_way)
    fast.test_reads_during_whole_scope_deletes_equal_the_jobs_result(
        conn, make_conn, seed_, key_type, scope_type, created_at)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE kind = 'delete'"
                        " AND survivors IS NOT NULL") == 0


def test_old_and_new_deletes_pending_together(conn: Conn) -> None:
    """A delete from before 0016 and one after it on one scope: both narrow the
    reads, and the reads equal what remains once both ran."""
    t = fast.build(conn, "text", "int", "timestamp")
    in_scope = sorted(fast.keys_of(conn, t, "1"))
    old = _submit_the_old_way(conn, t, "1", {}, in_scope[:3], {"page_size": 11})
    insert_row(conn, t, "1", n=1, key="between")
    new = submit_delete(conn, t, "1", {}, [in_scope[1], "between"], {"page_size": 13})
    insert_row(conn, t, "1", n=2, key="after")
    assert candidates(conn, t, "1").count("created_at OPERATOR(pg_catalog.>=) ") == 2
    during = fast.reads(conn, t, "1", 7)
    for job_id in (old, new):
        assert run_pages(conn, job_id)[-1] == "done"
    assert during == fast.final_reads(conn, t, "1")
    assert {in_scope[1], "between", "after"} <= set(during["visible"])
    assert not {in_scope[0], in_scope[2]} & set(during["visible"])


def test_a_retried_delete_keeps_its_fields(conn: Conn) -> None:
    """retry reuses the submit's predicate, and so its survivors: a canceled
    whole-scope delete retried narrows the reads again, as the parse would."""
    t = fast.build(conn, "bigint", "int", "timestamptz")
    # (Key 5 is scope 3's: excluded on purpose, allow_unknown_keys.)
    job_id = submit_delete(conn, t, "1", {}, ["5"], {"allow_unknown_keys": True})
    fields = survivors(conn, job_id)
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    assert candidates(conn, t, "1") == "true"
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    assert survivors(conn, job_id) == fields
    assert candidates(conn, t, "1") != "true"
    assert candidates(conn, t, "1") == parsed_candidates(conn, t, "1")
    during = fast.reads(conn, t, "1", 9)
    assert run_pages(conn, job_id)[-1] == "done"
    assert during == fast.final_reads(conn, t, "1")
