"""Counts over a scope while a delete with a long exclude list is pending
(migration 0031). pgjobs.visible_count and pgjobs.preview read the whole
scope through the mask; the list in pgjobs.job_exclusions is read there once
into a hash table (the mask's count form, pgjobs._mask(..., true)), not
probed once per row as a page probes it. Checked on the plan and on the
index's own scan counter, and, for results, the long (table) form of an
exclusion against the short (inline) form of the same exclusion and a Python
reference: for key columns of three types, and named id, key and job_id
(names the sub-select over pgjobs.job_exclusions used to resolve to its own
columns)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pgjobs.migrate import migrate, migration_files
from tests.support import Conn, cutoff_of, empty_database, job, run_pages, scalar

FUZZ_EXAMPLES = int(os.environ.get("PGJOBS_FUZZ_EXAMPLES", "30"))
KEY_SQL = {"bigint": "g",
           "text": "'k' || lpad(g::text, 6, '0')",
           "uuid": "(lpad(to_hex(g), 8, '0') || '-0000-4000-8000-000000000000')::uuid"}


def absent(key_type: str, count: int) -> list[str]:
    """count keys of no row, in the key's type."""
    if key_type == "bigint":
        return [str(10_000_000 + i) for i in range(count)]
    if key_type == "text":
        return [f"absent-{i}" for i in range(count)]
    return [f"{i:08x}-1111-4000-8000-000000000000" for i in range(count)]


def make_table(conn: Conn, key_column: str, key_type: str, rows: int) -> str:
    """A registered target keyed by key_column (3 scopes, every 23rd row
    created after any submit); returns its name."""
    name = f"rows_{key_column}_{key_type}"
    conn.execute(sql.SQL("""
        CREATE TABLE {t} ({k} {type} NOT NULL, table_id int NOT NULL, n int NOT NULL,
                          created_at timestamptz NOT NULL, PRIMARY KEY (table_id, {k}))""")
                 .format(t=sql.Identifier(name), k=sql.Identifier(key_column),
                         type=sql.SQL(key_type)))
    conn.execute(sql.SQL("""
        INSERT INTO {t} ({k}, table_id, n, created_at)
        SELECT {key}, 1 + g %% 3, g %% 7,
               CASE WHEN g %% 23 = 0 THEN now() + interval '1 hour'
                    ELSE now() - interval '1 day' END
          FROM generate_series(1, %s) g""").format(
        t=sql.Identifier(name), k=sql.Identifier(key_column), key=sql.SQL(KEY_SQL[key_type])),
        (rows,))
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    conn.execute("SELECT pgjobs.register_target(%s, %s, 'table_id', 'created_at')",
                 (name, key_column))
    return name


def rows_of(conn: Conn, name: str, key_column: str, scope: str) -> dict[str, tuple[int, datetime]]:
    """key (text) -> (n, created_at) of every row of the scope."""
    return {r[0]: (r[1], r[2]) for r in conn.execute(
        sql.SQL("SELECT {k}::text, n, created_at FROM {t} WHERE table_id = %s::int").format(
            k=sql.Identifier(key_column), t=sql.Identifier(name)), (scope,))}


def submit(conn: Conn, name: str, scope: str, filter_: dict[str, Any], exclude: list[str]) -> int:
    # The lists name keys of other scopes and of no row on purpose (the two
    # forms must read alike whatever they hold): allow_unknown_keys says so
    # (tests/test_trust_exclude_keys.py has the refusal). The release
    # upgraded from (tests/upgrade/previous_sql) has neither the refusal nor
    # the option, and refuses an option it does not know.
    options: dict[str, Any] = {"on_conflict": "queue"}
    if scalar(conn, "SELECT to_regproc('pgjobs._require_known_keys') IS NOT NULL"):
        options["allow_unknown_keys"] = True
    return int(scalar(conn, "SELECT pgjobs.submit_delete(%s::regclass, %s, %s::jsonb, %s,"
                            " %s::jsonb)",
                      (name, scope, json.dumps(filter_), exclude, json.dumps(options))))


def reads(conn: Conn, name: str, key_column: str, scope: str) -> dict[str, Any]:
    """What every read path says of the scope while deletes are pending."""
    mask = str(scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (name, scope)))
    visible: list[str] = []
    after: str | None = None
    while True:
        page = [r[0] for r in conn.execute(
            "SELECT v ->> %s FROM pgjobs.visible(%s::regclass, %s, '{}', %s, 500) v",
            (key_column, name, scope, after))]
        visible += page
        if len(page) < 500:
            break
        after = page[-1]
    return {
        "count": scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s)", (name, scope)),
        "count_n<3": scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s,"
                                  " '{\"n\": {\"$lt\": 3}}')", (name, scope)),
        "visible": sorted(visible),
        "mask": scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE table_id = %s::int AND ({})")
                       .format(sql.Identifier(name), sql.SQL(mask)), (scope,)),
        "preview": scalar(conn, "SELECT pgjobs.preview(%s::regclass, %s, '{\"n\": {\"$gte\": 2}}')"
                                " -> 'matches'", (name, scope)),
    }


KEYS = [("id", "bigint"), ("key", "bigint"), ("job_id", "bigint"), ("id", "text"),
        ("key", "text"), ("job_id", "uuid"), ("id", "uuid")]


def test_long_and_short_forms_of_an_exclusion_read_alike(conn: Conn) -> None:
    """A list of more than 100 keys (pgjobs.job_exclusions) and the same
    exclusion written short (the keys of the scope alone, inline) give every
    read the same answer, and the answer of a Python reference."""
    tables = {(k, ty): make_table(conn, k, ty, 900) for k, ty in KEYS}
    scope_rows = {kt: rows_of(conn, name, kt[0], "2") for kt, name in tables.items()}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(which=st.sampled_from(KEYS), data=st.data(),
           n_below=st.one_of(st.none(), st.integers(0, 7)),
           padding=st.integers(101, 400))
    def check(which: tuple[str, str], data: st.DataObject, n_below: int | None,
              padding: int) -> None:
        name, rows = tables[which], scope_rows[which]
        keys = sorted(rows)
        kept = data.draw(st.lists(st.sampled_from(keys), max_size=60, unique=True))
        filter_: dict[str, Any] = {} if n_below is None else {"n": {"$lt": n_below}}
        if which[1] == "uuid":
            kept = [k.upper() for k in kept]  # the same keys, another spelling
        seen = {}
        for form, exclude in (("long", kept + absent(which[1], padding)), ("short", kept)):
            job_id = submit(conn, name, "2", filter_, exclude)
            stored = job(conn, job_id)
            assert (stored["survivors"].get("exclusions") == "table") == (form == "long")
            seen[form] = reads(conn, name, which[0], "2")
            cutoff = cutoff_of(conn, job_id)
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        assert seen["long"] == seen["short"], (which, filter_)
        spared = {k.lower() for k in kept}
        left = {k for k, (n, created) in rows.items()
                if created > cutoff or k.lower() in spared
                or (n_below is not None and not n < n_below)}
        assert seen["long"]["visible"] == sorted(left)
        assert seen["long"]["count"] == seen["long"]["mask"] == len(left)
        assert seen["long"]["count_n<3"] == len([k for k in left if rows[k][0] < 3])
        # preview of {"n": {"$gte": 2}} now: the rows it would delete that the
        # pending one leaves (all rows it may see were created before now).
        assert seen["long"]["preview"] == len(
            [k for k in left if rows[k][0] >= 2 and rows[k][1] <= datetime.now(cutoff.tzinfo)])

    check()


@pytest.mark.parametrize(("key_column", "key_type"),
                         [("key", "bigint"), ("job_id", "bigint"), ("key", "text"),
                          ("job_id", "uuid")])
def test_a_delete_keyed_by_a_column_named_like_the_lists_own(
        conn: Conn, key_column: str, key_type: str) -> None:
    """The predicate's sub-select over pgjobs.job_exclusions (columns job_id,
    key) named the target's key column unqualified: a key column of either
    name resolved to the list's own column, and the delete kept every row or
    none of the ones it was told to keep. It deletes exactly its rows."""
    name = make_table(conn, key_column, key_type, 1200)
    rows = rows_of(conn, name, key_column, "1")
    kept = sorted(rows)[::4]
    job_id = submit(conn, name, "1", {"n": {"$lt": 5}}, kept + absent(key_type, 150))
    assert job(conn, job_id)["survivors"]["exclusions"] == "table"
    cutoff = cutoff_of(conn, job_id)
    doomed = {k for k, (n, created) in rows.items()
              if created <= cutoff and n < 5 and k not in set(kept)}
    assert doomed and set(kept) - doomed == set(kept)
    assert scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, '1')",
                  (name,)) == len(rows) - len(doomed)
    run_pages(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    assert set(rows_of(conn, name, key_column, "1")) == set(rows) - doomed
    assert job(conn, job_id)["done"] == len(doomed)


def exclusion_probes(conn: Conn, statement: str, params: tuple[Any, ...] = ()) -> int:
    """Scans of pgjobs.job_exclusions that statement starts (one per row when
    the list is probed row by row). Index and sequential scans both: which
    one a probe takes is the planner's choice on the statistics of the
    moment (autovacuum's ANALYZE of the list, found with
    PGJOBS_TEST_NOISE=analyze: 0 index scans for a page's 4,000 probes)."""
    def scans() -> int:
        return int(scalar(conn, "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0)"
                                " FROM pg_stat_xact_all_tables"
                                " WHERE relid = 'pgjobs.job_exclusions'::regclass"))
    with conn.transaction(force_rollback=True):
        before = scans()
        conn.execute(statement, params)  # type: ignore[arg-type]
        return scans() - before


def exclusion_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of an EXPLAIN (ANALYZE, FORMAT JSON) plan that read
    pgjobs.job_exclusions."""
    found = [plan] if plan.get("Relation Name") == "job_exclusions" else []
    for child in plan.get("Plans", []):
        found += exclusion_scans(child)
    return found


@pytest.mark.parametrize("filter_", [{"n": {"$lt": 5}}, {}])
def test_a_count_reads_a_long_list_once_a_page_probes_it(conn: Conn,
                                                          filter_: dict[str, Any]) -> None:
    """With a delete with 1000 excluded keys pending on a 4,000-row scope,
    visible_count and preview read the list once (a hashed SubPlan), where a
    page of the delete probes it once per row; a filtered delete and a
    whole-scope one (whose read short cut, pgjobs._mask_candidates, leaves
    the list to the mask in a count)."""
    name = make_table(conn, "id", "bigint", 12_000)
    conn.execute(f"CREATE INDEX ON {name} (table_id, created_at)")
    keys = sorted(rows_of(conn, name, "id", "1"), key=int)
    job_id = submit(conn, name, "1", filter_, keys[::4][:1000])
    count_sql = "SELECT pgjobs.visible_count(%s::regclass, '1')"
    assert exclusion_probes(conn, count_sql, (name,)) <= 2
    assert exclusion_probes(conn, "SELECT pgjobs.preview(%s::regclass, '1', '{}')",
                            (name,)) <= 2
    # The same counter sees a page's probes, one per row it gets to.
    predicate = job(conn, job_id)["predicate"]
    assert exclusion_probes(conn, f"SELECT count(*) FROM {name} WHERE table_id = 1 AND id <= 4000"
                                  f" AND coalesce(({predicate}), false)") > 100
    # The plan of the count's statement, as pgjobs._visible_count_as writes it.
    candidates = scalar(conn, "SELECT pgjobs._mask_candidates(%s::regclass, '1', true)", (name,))
    mask = scalar(conn, "SELECT pgjobs._mask(%s::regclass, '1', true)", (name,))
    assert "OFFSET 0" not in mask and "job_exclusions" not in candidates
    plan = scalar(conn, f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM {name}"
                        f" WHERE table_id = 1 AND ({candidates}) AND ({mask})")[0]["Plan"]
    assert "hashed SubPlan" in json.dumps(plan), plan
    assert [s["Actual Loops"] for s in exclusion_scans(plan)] == [1], plan
    # The count is costed as if it probed per row (the planner costs the
    # sub-select's first alternative): it runs without JIT, which compiled
    # it for longer than it runs.
    assert "jit=off" in scalar(conn, "SELECT proconfig FROM pg_proc"
                                     " WHERE oid = 'pgjobs._visible_count_as'::regproc")
    # What the count leaves out, pgjobs.mask (pasted into a client's reads)
    # and the page keep: the per-row probe.
    assert "OFFSET 0" in scalar(conn, "SELECT pgjobs.mask(%s::regclass, '1')", (name,))


PREVIOUS = Path(__file__).parent / "upgrade" / "previous_sql"


def keyed_by_list_columns(conn: Conn) -> tuple[
        dict[str, str], dict[str, int], dict[str, list[str]],
        dict[str, dict[str, tuple[int, datetime]]]]:
    """Targets keyed by a column named key and one named job_id (the list's own
    column names), 900 rows each, and on each a delete of scope 1 with a long
    list: every third key kept, plus 200 absent ones. (names, jobs, kept keys,
    rows before the delete), each by key column name."""
    names = {k: make_table(conn, k, "bigint", 900) for k in ("key", "job_id")}
    jobs: dict[str, int] = {}
    kept: dict[str, list[str]] = {}
    rows: dict[str, dict[str, tuple[int, datetime]]] = {}
    for k, name in names.items():
        rows[k] = rows_of(conn, name, k, "1")
        kept[k] = sorted(rows[k])[::3]
        jobs[k] = submit(conn, name, "1", {}, kept[k] + absent("bigint", 200))
    return names, jobs, kept, rows


def test_pending_deletes_keyed_by_key_keep_the_renamed_probe_through_upgrade(
        cluster_url: str) -> None:
    """Deletes of the last release (tests/upgrade/previous_sql) with a long list
    on a target keyed by a column named key or job_id: their lists sit in
    pgjobs.job_exclusions behind the renamed probe (0031; the release 0031
    rewrote is no longer the one upgraded from, so its rewrite itself is not
    shown here: test_a_stopped_delete_... below shows 0032's), the upgrade
    leaves it so, and the reads and the delete are then exact. A job that is
    not pending keeps its predicate. The probe is spelled as the last release
    compiled it (since stop 30: pg_catalog's operators and types, named)."""
    with empty_database(cluster_url, "exclusions_0031") as dsn:
        assert migrate(dsn, PREVIOUS)["migrations_applied"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            names, jobs, kept, rows = keyed_by_list_columns(conn)
            done = submit(conn, names["key"], "2", {}, absent("bigint", 150))
            conn.execute("SELECT pgjobs.cancel(%s)", (done,))
            canceled = job(conn, done)["predicate"]

            migrate(dsn)
            assert job(conn, done)["predicate"] == canceled
            for k, name in names.items():
                predicate = job(conn, jobs[k])["predicate"]
                assert predicate.endswith(
                    f" AND NOT (EXISTS (SELECT FROM pgjobs.job_exclusions x (x_job_id, x_key)"
                    f" WHERE x.x_job_id OPERATOR(pg_catalog.=) {jobs[k]}"
                    f" AND x.x_key OPERATOR(pg_catalog.=) ({k}::pg_catalog.text COLLATE \"C\")"
                    f" OFFSET 0))"), predicate
                cutoff = cutoff_of(conn, jobs[k])
                left = {key for key, (_, created) in rows[k].items()
                        if created > cutoff or key in set(kept[k])}
                assert scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, '1')",
                              (name,)) == len(left)
                conn.execute("CALL pgjobs.run_job(%s)", (jobs[k],))
                assert job(conn, jobs[k])["status"] == "succeeded"
                assert set(rows_of(conn, name, k, "1")) == left


# The probe as 0029's pgjobs._exclusion_clause wrote it (stops 21 and 22), the
# key column unqualified: named key or job_id, it was the list's own column.
OLD_PROBE = ("EXISTS (SELECT FROM pgjobs.job_exclusions x WHERE x.job_id = {job} "
             "AND x.key = ({k}::text COLLATE \"C\") OFFSET 0)")


@pytest.mark.parametrize("status", ["canceled", "failed"])
def test_a_stopped_delete_with_the_old_probe_retried_after_upgrade_keeps_its_keys(
        cluster_url: str, status: str) -> None:
    """0031 rewrote the probe of pending deletes only. A delete of stop 21 or 22
    keyed by a column named key or job_id, with a long list, that had been
    canceled or had failed kept 0029's clause, and pgjobs.retry queues a job
    with the predicate it has: retried after the upgrade, keyed by job_id it
    deleted the very rows it was told to keep (keyed by key, it deleted
    nothing). Such a job as a stop-23 database held it (after 0031, before
    0032) is made here from the last release (tests/upgrade/previous_sql, which
    has 0032 already) by putting the old clause back and striking 0032 from the
    migration log; this checkout's migrate must then apply 0032, which gives it
    the renamed probe, and the retried delete is exact."""
    with empty_database(cluster_url, "exclusions_0032") as dsn:
        assert migrate(dsn, PREVIOUS)["migrations_applied"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM pgjobs._yoyo_migration"
                         " WHERE migration_id = '0032.stopped_exclusion_probes'")
            names, jobs, kept, rows = keyed_by_list_columns(conn)
            for k in names:
                if status == "canceled":
                    conn.execute("SELECT pgjobs.cancel(%s)", (jobs[k],))
                else:
                    conn.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now(),"
                                 " error = 'a page failed' WHERE id = %s", (jobs[k],))
                predicate = job(conn, jobs[k])["predicate"]
                head, _, _ = predicate.rpartition(" AND NOT (EXISTS (SELECT FROM")
                conn.execute("UPDATE pgjobs.jobs SET predicate = %s WHERE id = %s",
                             (head + " AND NOT (" + OLD_PROBE.format(job=jobs[k], k=k) + ")",
                              jobs[k]))

            # 0032 again, then whatever this checkout adds after the release.
            newer = sorted({p.stem for p in migration_files()}
                           - {p.stem for p in migration_files(PREVIOUS)})
            assert migrate(dsn)["migrations_applied"] == ["0032.stopped_exclusion_probes",
                                                          *newer]
            for k, name in names.items():
                assert scalar(conn, "SELECT pgjobs.retry(%s)", (jobs[k],)) is True
                cutoff = cutoff_of(conn, jobs[k])
                left = {key for key, (_, created) in rows[k].items()
                        if created > cutoff or key in set(kept[k])}
                conn.execute("CALL pgjobs.run_job(%s)", (jobs[k],))
                assert job(conn, jobs[k])["status"] == "succeeded"
                remaining = set(rows_of(conn, name, k, "1"))
                assert (len(remaining), remaining == left) == (len(left), True), k
                assert job(conn, jobs[k])["predicate"].endswith(
                    f"x.x_key = ({k}::text COLLATE \"C\") OFFSET 0))")
