"""Exclude lists ("every row of the scope except these keys") of any length:
a list of more than 100 keys is stored once per job in pgjobs.job_exclusions
and the predicate reads it through one sub-select, so the statement a page or
a read plans does not grow with the list. Checked against a plain Python
reference for 0, 1, 1000 and 100,000 keys and the key types of the shared
target (bigint, text, uuid): the delete itself, the mask while it is pending
(visible, visible_count, a query with pgjobs.mask()), preview, and a backfill
queued behind it. Also: the submit looks its target up and checks it once."""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support import (
    Conn,
    Target,
    cutoff_of,
    job,
    job_rows,
    make_rows_target,
    run_pages,
    scalar,
    seed,
    snapshot,
    submit_backfill,
    submit_delete,
    visible_keys,
)

SIZES = [0, 1, 1000, 100_000]


# These lists name keys of no row on purpose (the exclusion's mechanics at
# every length), which a submit refuses unless told they are meant
# (tests/test_trust_exclude_keys.py).
ABSENT_OK = {"allow_unknown_keys": True}


def absent_keys(t: Target, count: int) -> list[str]:
    """Keys of no row of the target, in the key's type."""
    if t.key_type == "bigint":
        return [str(10_000_000 + i) for i in range(count)]
    if t.key_type == "text":
        return [f"absent-{i}" for i in range(count)]
    return [f"{i:08x}-0000-4000-8000-000000000000" for i in range(count)]


def exclusion_list(conn: Conn, t: Target, scope: str, size: int) -> list[str]:
    """size keys: every third key of the scope (at most half the list), the rest
    keys of no row; in another spelling where the type has one."""
    in_scope = sorted(r[0] for r in conn.execute(
        sql.SQL("SELECT id::text FROM {} WHERE table_id::text = %s").format(
            sql.Identifier(t.name)), (scope,)))
    real = in_scope[::3][: (size + 1) // 2]
    keys = real + absent_keys(t, size - len(real))
    if t.key_type == "uuid":
        keys = [k.upper() for k in keys]  # the same uuid, another spelling
    assert len(keys) == size
    return keys


def mask_count(conn: Conn, t: Target, scope: str) -> int:
    """Rows of the scope a query with pgjobs.mask() pasted in returns."""
    mask = scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (t.name, scope))
    return int(scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE table_id::text = %s AND ({})")
                      .format(sql.Identifier(t.name), sql.SQL(mask)), (scope,)))


@pytest.mark.parametrize("key_type", ["bigint", "text", "uuid"])
@pytest.mark.parametrize("size", SIZES)
def test_a_delete_spares_exactly_its_excluded_keys(conn: Conn, key_type: str, size: int) -> None:
    if size == 100_000 and key_type == "text":
        pytest.skip("100,000 keys: bigint and uuid (text at 1000 takes the same path)")
    t = make_rows_target(conn, key_type=key_type)
    seed(conn, t, 1500)
    scope = "2"
    exclude = exclusion_list(conn, t, scope, size)
    before = snapshot(conn, t)
    seen = scalar(conn, "SELECT pgjobs.preview(%s::regclass, %s, '{\"n\": {\"$lt\": 5}}', %s,"
                        " %s::jsonb)", (t.name, scope, exclude, json.dumps(ABSENT_OK)))
    job_id = submit_delete(conn, t, scope, {"n": {"$lt": 5}}, exclude,
                           {"page_size": 97, **ABSENT_OK})
    canonical = set(scalar(conn, f"SELECT coalesce(array_agg(k::{key_type}::text), '{{}}')"
                                 " FROM unnest(%s::text[]) k", (exclude,)))
    doomed = job_rows(before, scope, cutoff_of(conn, job_id), lambda r: r["n"] < 5,
                      frozenset(canonical))
    in_scope = {k for k, r in before.items() if r["table_id"] == scope}
    assert doomed and doomed < in_scope
    stored = job(conn, job_id)
    if size > 100:
        assert scalar(conn, "SELECT count(*) FROM pgjobs.job_exclusions WHERE job_id = %s",
                      (job_id,)) == len(canonical)
        assert "pgjobs.job_exclusions" in stored["predicate"]
        assert stored["survivors"]["exclusions"] == "table"
        # The payload says how many (100,000 uuids would not fit its 1 MiB).
        assert stored["payload"]["exclude_count"] == size
        assert "exclude" not in stored["payload"]
    else:
        assert scalar(conn, "SELECT count(*) FROM pgjobs.job_exclusions") == 0
    # preview counts what the job will delete.
    assert seen["matches"] == len(doomed) and seen["exact"]
    # The mask hides exactly the doomed rows while the job is pending.
    left = in_scope - doomed
    assert scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s)",
                  (t.name, scope)) == len(left)
    assert set(visible_keys(conn, t, scope, limit=250)) == left
    assert mask_count(conn, t, scope) == len(left)
    # A backfill of the scope, queued behind the delete, touches what it leaves.
    fill = submit_backfill(conn, t, scope, {}, {"label": "kept"})
    run_pages(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    after = snapshot(conn, t)
    assert set(after) == set(before) - doomed
    assert job(conn, job_id)["done"] == len(doomed)
    run_pages(conn, fill)
    assert {k for k, r in snapshot(conn, t).items() if r["label"] == "kept"} == {
        k for k in left if before[k]["created_at"] <= cutoff_of(conn, fill)}
    # The job's keys go with the job.
    conn.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.job_exclusions") == 0


def test_the_whole_scope_short_cut_reads_the_stored_keys(conn: Conn) -> None:
    """A whole-scope delete lets reads find the few rows it spares through an
    index on (scope, created_at) (pgjobs._mask_candidates): the spared keys are
    the stored ones, in the same sub-select the predicate uses."""
    t = make_rows_target(conn)
    conn.execute("CREATE INDEX ON user_table_rows (table_id, created_at)")
    seed(conn, t, 1500)
    exclude = exclusion_list(conn, t, "1", 1000)
    job_id = submit_delete(conn, t, "1", {}, exclude, ABSENT_OK)
    candidates = str(scalar(conn, "SELECT pgjobs._mask_candidates('user_table_rows', '1')"))
    assert f"pgjobs.job_exclusions x WHERE x.job_id OPERATOR(pg_catalog.=) {job_id} " in candidates
    spared = {k for k in exclude if int(k) < 10_000_000} | {
        k for k, r in snapshot(conn, t).items()
        if r["table_id"] == "1" and r["created_at"] > cutoff_of(conn, job_id)}
    assert set(visible_keys(conn, t, "1", limit=50)) == spared
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == len(spared)
    # The stored fields build what the predicate's text parses to (the read
    # path of deletes submitted before 0016, survivors cleared).
    with conn.transaction(force_rollback=True):
        conn.execute("UPDATE pgjobs.jobs SET survivors = NULL")
        assert scalar(conn, "SELECT pgjobs._mask_candidates('user_table_rows', '1')") \
            == candidates


def page_plan(conn: Conn, job_id: int) -> tuple[str, dict[str, Any]]:
    """The predicate and the plan of a page's statement for job_id."""
    predicate = str(scalar(conn, "SELECT predicate FROM pgjobs.jobs WHERE id = %s", (job_id,)))
    plan = scalar(conn, sql.SQL("EXPLAIN (FORMAT JSON, SUMMARY) DELETE FROM user_table_rows "
                                "WHERE table_id = 1 AND id > 0 AND id <= 5000 "
                                "AND coalesce(({}), false)").format(sql.SQL(predicate)))
    return predicate, plan[0]


def test_the_page_statement_does_not_grow_with_the_list(conn: Conn) -> None:
    """The plan is the one a list gets before its first ANALYZE: with
    statistics taken while the list held 101 keys (one page), a sequential
    scan of it per row is the cheaper plan and is taken; autovacuum's ANALYZE
    in the middle of the test chose it (found with PGJOBS_TEST_NOISE=analyze).
    Autovacuum is off on the test database's list, so the statistics are the
    same in every run."""
    conn.execute("ALTER TABLE pgjobs.job_exclusions SET (autovacuum_enabled = false)")
    t = make_rows_target(conn)
    seed(conn, t, 300)
    texts = {}
    for size in (101, 1000, 100_000):
        job_id = submit_delete(conn, t, "1", {}, absent_keys(t, size), ABSENT_OK)
        predicate, plan = page_plan(conn, job_id)
        head, tail = predicate.split(" AND (true)")
        texts[size] = tail.replace(f"=) {job_id} AND", "=) <job> AND")
        assert len(predicate) < 1000
        # Each row the rest of the predicate keeps probes the list's index.
        plan_text = json.dumps(plan)
        assert "job_exclusions_pkey" in plan_text and "hashed" not in plan_text, plan
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    assert texts[101] == texts[1000] == texts[100_000]
    assert texts[101] == (" AND NOT (EXISTS (SELECT FROM pgjobs.job_exclusions x"
                          " WHERE x.job_id OPERATOR(pg_catalog.=) <job>"
                          " AND x.key OPERATOR(pg_catalog.=) "
                          '(id::pg_catalog.text COLLATE "C") OFFSET 0))')
    # A mask of many pending deletes with long lists stays short too.
    for _ in range(3):
        submit_delete(conn, t, "1", {"n": 1}, absent_keys(t, 5000),
                      {"on_conflict": "queue", **ABSENT_OK})
    mask = str(scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')"))
    assert len(mask) < 3000 and mask.count("pgjobs.job_exclusions") == 3


def test_a_client_reads_the_keys_of_its_own_jobs_only(conn: Conn) -> None:
    """pgjobs.mask() pasted into a client's query reads pgjobs.job_exclusions
    as that client: it works, and the keys of jobs of scopes it may not see
    stay hidden (the same rule as pgjobs.jobs)."""
    t = make_rows_target(conn)
    seed(conn, t, 600)
    job_1 = submit_delete(conn, t, "1", {}, absent_keys(t, 200) + ["3", "6"], ABSENT_OK)
    job_2 = submit_delete(conn, t, "2", {}, absent_keys(t, 300), ABSENT_OK)
    role = f"pgjobs_test_excl_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT ON user_table_rows TO {role}")
    try:
        later = scalar(conn, "SELECT count(*) FROM user_table_rows"
                             " WHERE table_id = 1 AND created_at > %s", (cutoff_of(conn, job_1),))
        conn.execute(f"SET ROLE {role}")
        conn.execute("SET pgjobs.allowed_scopes = '1'")
        assert mask_count(conn, t, "1") == 2 + later
        seen = {r[0]: r[1] for r in conn.execute(
            "SELECT job_id, count(*) FROM pgjobs.job_exclusions GROUP BY job_id")}
        assert seen == {job_1: 202}
        assert job_2 not in seen
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM pgjobs.job_exclusions")
    finally:
        conn.execute("RESET ROLE")
        conn.execute("RESET pgjobs.allowed_scopes")
        conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_submit_checks_its_target_once(conn: Conn, make_conn: Any) -> None:
    """submit_delete looked its target up and checked it (pgjobs._target, with
    the trust check) four times; once now, with every other check still made
    (tests/test_privileges.py, test_trust_*.py)."""
    t = make_rows_target(conn)
    seed(conn, t, 300)
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls

    def calls() -> dict[str, int]:
        return {r[0]: r[1] for r in tx.execute(
            "SELECT funcname, calls FROM pg_stat_xact_user_functions"
            " WHERE schemaname = 'pgjobs' AND funcname IN"
            " ('_target', '_require_trusted', '_require', '_submit_delete_as')")}

    def delta(submit: Any) -> dict[str, int]:
        tx.execute("SET track_functions = 'pl'")
        before = calls()
        submit()
        after = calls()
        tx.rollback()
        return {f: after.get(f, 0) - before.get(f, 0) for f in after}

    # (A function with SET clauses may count each call twice here: compare.)
    for filter_, exclude in [({}, []), ({"k": 1}, ["3"]), ({"n": 2}, absent_keys(t, 500))]:
        seen = delta(lambda f=filter_, e=exclude: submit_delete(tx, t, "1", f, e, ABSENT_OK))
        once = seen["_submit_delete_as"]
        assert once in (1, 2), seen
        assert seen["_target"] == once, (filter_, seen)
        assert seen["_require_trusted"] == once, (filter_, seen)
        assert seen["_require"] == 2 * once, (filter_, seen)  # DELETE, SELECT
    # A backfill likewise.
    seen = delta(lambda: submit_backfill(tx, t, "1", {"n": 2}, {"label": "x"}))
    assert seen["_target"] == seen["_require_trusted"] == once, seen


@pytest.mark.parametrize(("key_type", "spell"), [
    ("numeric(8,3)", lambda k: k + "0"),            # 1.5 = 1.50: not the same text
    ("date", lambda k: k),
    ('text COLLATE "ci_h6"', lambda k: k.upper()),  # 'KEY1' keeps 'key1'
])
def test_long_lists_of_other_key_types_stay_inline(conn: Conn, key_type: str, spell: Any) -> None:
    """Keys whose text is not their identity (equal values spelt apart, a
    case-insensitive collation) keep the inline list, whatever its length:
    the probe by text would miss them."""
    if "ci_h6" in key_type:
        if not scalar(conn, "SELECT count(*) FROM pg_collation WHERE collprovider = 'i'"):
            pytest.skip("this server has no ICU")
        conn.execute("CREATE COLLATION ci_h6 (provider = icu, locale = 'und-u-ks-level2',"
                     " deterministic = false)")
    key_sql = {"numeric(8,3)": "g * 1.5", "date": "date '2030-01-01' + g",
               'text COLLATE "ci_h6"': "'key' || g"}[key_type]
    conn.execute(f"""CREATE TABLE t (k {key_type} NOT NULL, s int NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                     PRIMARY KEY (s, k))""")
    conn.execute(f"INSERT INTO t (k, s) SELECT {key_sql}, s FROM generate_series(1, 400) g,"
                 " generate_series(1, 2) s")
    conn.execute("SELECT pgjobs.register_target('t', 'k', 's', 'created_at')")
    keys = [r[0] for r in conn.execute("SELECT k::text FROM t WHERE s = 1 ORDER BY k")]
    kept = keys[::2]
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', '{}', %s, "
                          "'{\"page_size\": 50}')", ([spell(k) for k in kept],))
    assert "job_exclusions" not in str(job(conn, job_id)["predicate"])
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1')") == len(kept)
    run_pages(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    assert [r[0] for r in conn.execute("SELECT k::text FROM t WHERE s = 1 ORDER BY k")] == kept
