"""The read path's short cut past a whole-scope delete (pgjobs._mask_candidates)
keeps the mask exact: with an index on (scope, created_at) for the short cut to
use, random combinations of scopes, key types, created_at types, exclusions,
rows written after the submit (by transactions begun before it, after it,
updates moving created_at, NULL created_at) and several pending deletes,
every read in the middle of the jobs (pgjobs.visible page by page, with and
without a filter; visible_count; a query with pgjobs.mask()) returns exactly
what the table holds once the jobs ran."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

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

SMALL: dict[str, Any] = {"n": {"$lt": 3}}


def build(conn: Conn, key_type: str, scope_type: str, created_at: str) -> Target:
    t = make_rows_target(conn, key_type=key_type, scope_type=scope_type, register=False)
    conn.execute(f"ALTER TABLE {t.name} ALTER created_at DROP NOT NULL")
    options: dict[str, Any] = {}
    if created_at == "timestamp":
        conn.execute(f"ALTER TABLE {t.name} ALTER created_at TYPE timestamp"
                     " USING created_at AT TIME ZONE 'Europe/Paris',"
                     " ALTER created_at SET DEFAULT now() AT TIME ZONE 'Europe/Paris'")
        options["created_at_time_zone"] = "Europe/Paris"
    conn.execute(f"CREATE INDEX ON {t.name} (table_id, created_at)")
    conn.execute("SELECT pgjobs.register_target(%s::regclass, 'id', 'table_id', 'created_at',"
                 " 'data', %s::jsonb)", (t.name, json.dumps(options)))
    seed(conn, t, 240)
    # Some rows of every scope without a created_at: xmin alone decides.
    conn.execute(f"UPDATE {t.name} SET created_at = NULL WHERE n = 6 AND label LIKE '%%3'")
    return t


def keys_of(conn: Conn, t: Target, scope: str) -> set[str]:
    return {r[0] for r in conn.execute(
        f"SELECT id::text FROM {t.name} WHERE table_id = %s", (scope,))}


def reads(conn: Conn, t: Target, scope: str, limit: int) -> dict[str, Any]:
    """Everything a reader of the scope can ask for, as comparable values."""
    mask = scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (t.name, scope))
    masked = {r[0] for r in conn.execute(
        f"SELECT id::text FROM {t.name} WHERE table_id = %s AND ({mask})", (scope,))}
    walked = visible_keys(conn, t, scope, limit=limit)
    assert len(walked) == len(set(walked)), "a key was returned twice"
    return {
        "visible": set(walked),
        "visible n<3": set(visible_keys(conn, t, scope, SMALL, limit=limit)),
        "count": scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s)", (t.name, scope)),
        "count n<3": scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s, %s::jsonb)",
                            (t.name, scope, json.dumps(SMALL))),
        "mask": masked,
    }


def final_reads(conn: Conn, t: Target, scope: str) -> dict[str, Any]:
    keys = keys_of(conn, t, scope)
    small = {r[0] for r in conn.execute(
        f"SELECT id::text FROM {t.name} WHERE table_id = %s AND n < 3", (scope,))}
    return {"visible": keys, "visible n<3": small, "count": len(keys), "count n<3": len(small),
            "mask": keys}


CASES = [(seed_, key_type, scope_type, created_at)
         for seed_, (key_type, scope_type, created_at) in enumerate([
             ("bigint", "int", "timestamptz"),
             ("text", "text", "timestamptz"),
             ("uuid", "int", "timestamp"),
             ("bigint", "text", "timestamp"),
             ("text", "int", "timestamptz"),
             ("bigint", "int", "timestamptz"),
         ])]


@pytest.mark.parametrize(("seed_", "key_type", "scope_type", "created_at"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CASES])
def test_reads_during_whole_scope_deletes_equal_the_jobs_result(
        conn: Conn, make_conn: Callable[..., Conn], seed_: int, key_type: str,
        scope_type: str, created_at: str) -> None:
    rng = random.Random(seed_)
    t = build(conn, key_type, scope_type, created_at)
    scope, other = t.scope(1), t.scope(2)
    in_scope = sorted(keys_of(conn, t, scope))

    # A transaction begun before the submit, committed after it: its rows are
    # dated before the cutoff yet not the job's (the horizon is its start).
    early = make_conn(autocommit=False)
    if rng.random() < 0.7:
        early.execute("SELECT 1")  # its transaction (and now()) starts here
        insert_row(early, t, scope, n=1, data={"k": 1}, key="early")

    exclude = rng.sample(in_scope, rng.randrange(0, 6))
    if rng.random() < 0.5:
        exclude.append("no-such-key" if key_type == "text" else
                       "00000000-0000-0000-0000-000000000000" if key_type == "uuid"
                       else "999999")
    # (A key of no row, and below keys the first delete dooms, are excluded on
    # purpose: allow_unknown_keys; tests/test_trust_exclude_keys.py has the
    # refusal.)
    first = submit_delete(conn, t, scope, {}, exclude, {"page_size": rng.choice([7, 19, 40]),
                                                        "allow_unknown_keys": True})
    if rng.random() < 0.7:
        early.commit()
    else:
        early.rollback()

    # Written after the submit: new rows, an old row moved to a new created_at
    # (the job spares it), an old row updated otherwise (still the job's).
    for i in range(rng.randrange(1, 4)):
        insert_row(conn, t, scope, n=i, data={"k": i}, key=f"late-{i}")
    moved, touched = rng.sample([k for k in in_scope if k not in exclude], 2)
    conn.execute(f"UPDATE {t.name} SET created_at = DEFAULT WHERE id::text = %s", (moved,))
    conn.execute(f"UPDATE {t.name} SET n = 2 WHERE id::text = %s", (touched,))

    jobs = [first]
    second = rng.choice(["none", "whole", "filtered"])
    if second != "none":  # a later delete: it dooms the rows written so far
        jobs.append(submit_delete(conn, t, scope, {} if second == "whole" else {"n": 1},
                                  rng.sample(in_scope, 2),
                                  {"page_size": 23, "allow_unknown_keys": True}))
        insert_row(conn, t, scope, n=2, data={"k": 2}, key="after-both")
    other_before = keys_of(conn, t, other)

    canonical = scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (first,))
    candidates = scalar(conn, "SELECT pgjobs._mask_candidates(%s::regclass, %s)",
                        (t.name, canonical))
    assert candidates != "true", "the short cut does not recognise a whole-scope delete"

    observed: list[dict[str, Any]] = [reads(conn, t, scope, rng.choice([1, 9, 50]))]

    def check(state: str) -> None:
        if rng.random() < 0.5:
            observed.append(reads(conn, t, scope, rng.choice([4, 33])))

    for job_id in jobs:
        assert run_pages(conn, job_id, each=check)[-1] == "done"
    final = final_reads(conn, t, scope)
    assert final["visible"], "something must remain for the test to mean anything"
    for seen in observed:
        assert seen == final
    assert keys_of(conn, t, other) == other_before
    assert reads(conn, t, scope, 50) == final
    assert scalar(conn, "SELECT pgjobs._mask_candidates(%s::regclass, %s)",
                  (t.name, canonical)) == "true"


def test_short_cut_narrows_only_whole_scope_deletes(conn: Conn) -> None:
    t = build(conn, "bigint", "int", "timestamptz")

    def candidates() -> str:
        return str(scalar(conn, "SELECT pgjobs._mask_candidates('user_table_rows', '1')"))

    assert candidates() == "true"
    submit_delete(conn, t, "1", {"n": 3})
    assert candidates() == "true"  # a filter: every row may be spared by it
    submit_delete(conn, t, "2", {})
    assert candidates() == "true"  # another scope's delete
    conn.execute("SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', '{\"n\": 0}')")
    assert candidates() == "true"  # a backfill hides nothing
    job_id = submit_delete(conn, t, "1", {}, ["5"], {"allow_unknown_keys": True})
    assert candidates().startswith("(created_at OPERATOR(pg_catalog.>=) ")
    assert "id OPERATOR(pg_catalog.=) ANY ('{5}'::bigint[])" in candidates()
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    assert candidates() == "true"


def test_short_cut_uses_the_created_at_index(conn: Conn) -> None:
    """The page during a whole-scope delete reads the rows that can be visible
    through the (scope, created_at) index, not every doomed row."""
    t = make_rows_target(conn)
    conn.execute("CREATE INDEX ON user_table_rows (table_id, created_at)")
    conn.execute("INSERT INTO user_table_rows (table_id, n, created_at) SELECT 1, g % 7,"
                 " now() - interval '1 day' FROM generate_series(1, 20000) g")
    conn.execute("ANALYZE user_table_rows")
    submit_delete(conn, t, "1")
    late = insert_row(conn, t, "1")
    query = scalar(conn, """
        SELECT format('SELECT id FROM user_table_rows WHERE table_id = 1 AND (%s) AND (%s)'
                      ' ORDER BY id LIMIT 100',
                      pgjobs._mask_candidates('user_table_rows', '1'),
                      pgjobs._mask('user_table_rows', '1'))""")
    plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {query}"))
    assert "user_table_rows_table_id_created_at_idx" in plan, plan
    assert [r[0] for r in conn.execute(query)] == [int(late)]
    assert visible_keys(conn, t, "1") == [late]


def test_client_roles_read_through_the_short_cut_as_the_owner_does(conn: Conn) -> None:
    """A pgjobs_client role confined by allowed_scopes, on a target with a
    row-level security policy registered with ignore_row_security, reads the
    same rows as the owner during a whole-scope delete, and is still refused
    another scope."""
    t = build(conn, "bigint", "int", "timestamptz")
    role = f"pgjobs_fast_reader_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT ON user_table_rows TO {role}")
    conn.execute("ALTER TABLE user_table_rows ENABLE ROW LEVEL SECURITY")
    conn.execute(f"CREATE POLICY own ON user_table_rows TO {role} USING (table_id = 1)")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id', 'created_at',"
                 " 'data', '{\"ignore_row_security\": true}')")
    job_id = submit_delete(conn, t, "1", {}, ["3", "6"])
    late = insert_row(conn, t, "1", n=1)
    try:
        owner = reads(conn, t, "1", 7)
        conn.execute(f"SET ROLE {role}")
        conn.execute("SET pgjobs.allowed_scopes = '1'")
        assert reads(conn, t, "1", 7) == owner
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            visible_keys(conn, t, "2")
    finally:
        conn.execute("RESET pgjobs.allowed_scopes")
        conn.execute("RESET ROLE")
    assert {late, "3", "6"} <= owner["visible"]
    assert run_pages(conn, job_id)[-1] == "done"
    assert final_reads(conn, t, "1") == owner
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")
