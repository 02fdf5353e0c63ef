"""`pgjobs items JOB`: a fan-out job's items a keyset page at a time, and the
items `pgjobs status` adds for a fan-out job (docs/command-line.md, "Fan-out
jobs' items"; docs/fanout.md).

Against real PostgreSQL through click's runner: the text and --json shapes,
paging by --after to the last item, the status filter, the refusals (not a
fan-out job: 22023, exit 2; unknown: status's own line), a client that sees
only its own jobs' items (another client's job answers as a job that does not
exist), and the plans: a page is a walk of job_items_job_idx that reads no
further than the page (counted from EXPLAIN ANALYZE), never a scan of the
job's or every job's items."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from pgjobs import queries
from pgjobs.cli.items import ITEM_STATUSES
from pgjobs.cli.main import main
from pgjobs.errors import UNKNOWN_JOB_HINT
from tests.support import make_target, scalar, submit
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

SUBMIT = ("SELECT pgjobs.submit_items('doc', 'items'::regclass, %s, %s::jsonb, "
          "'{\"max_attempts\": 1}')")
CLAIM = "SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w', '5 minutes', %s)"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL", "PGJOBS_JSON", "PGJOBS_LIMIT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli(dsn: str, conn: Conn) -> Callable[..., Result]:
    make_target(conn)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--dsn", dsn, *args])
    return invoke


def fanout(conn: Conn, payloads: list[Any], scope: str = "1") -> int:
    return int(scalar(conn, SUBMIT, (scope, json.dumps(payloads))))


def mixed(conn: Conn) -> tuple[int, list[int]]:
    """A job of four items: the first succeeded, the second failed, the third
    running, the fourth queued. Returns the job and its item ids in order."""
    job = fanout(conn, [{"doc": n} for n in range(4)])
    (first, w1), (second, w2), (third, _) = conn.execute(CLAIM, (3,)).fetchall()
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s, '{\"pages\": 3}')", (first, w1))
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s)", (second, w2, "timeout\ncalling model"))
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.job_items WHERE job_id = %s ORDER BY id", (job,))]
    assert ids[:3] == [first, second, third]
    return job, ids


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    return line


def test_the_statuses_are_the_tables(conn: Conn) -> None:
    """--status's choices and the counts' order are the CHECK of job_items.status."""
    definition = scalar(conn, """
        SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
         WHERE c.conrelid = 'pgjobs.job_items'::regclass AND c.contype = 'c'
           AND c.conkey = ARRAY[(SELECT a.attnum FROM pg_attribute a
                                  WHERE a.attrelid = c.conrelid AND a.attname = 'status')]""")
    assert sorted(re.findall(r"'(\w+)'::text", definition)) == sorted(ITEM_STATUSES)


def test_items_piped_in_id_order_with_counts(cli: Callable[..., Result], conn: Conn) -> None:
    job, ids = mixed(conn)
    result = cli("items", str(job))
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(int(c[0]), c[1], c[2]) for c in lines] == [
        (ids[0], "succeeded", "1"), (ids[1], "failed", "1"), (ids[2], "running", "1"),
        (ids[3], "queued", "0")]
    assert lines[1][5] == "timeout calling model"  # one line
    assert lines[2][3].startswith("w#") and lines[2][4].startswith("20")  # ISO 8601
    assert "T" in lines[2][4]
    assert lines[3][3:] == ["-", "-", "-"]
    assert result.stderr.splitlines() == [
        f"job {job}: 4 items: 1 queued, 1 running, 1 succeeded, 1 failed"]


def test_items_json_lines(cli: Callable[..., Result], conn: Conn) -> None:
    job, ids = mixed(conn)
    result = cli("items", str(job), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ids
    assert set(rows[0]) == {"id", "job_id", "status", "attempts", "worker", "lease_expires_at",
                            "run_at", "created_at", "started_at", "finished_at", "error",
                            "payload", "result"}
    assert rows[0]["payload"] == {"doc": 0} and rows[0]["result"] == {"pages": 3}
    assert rows[1]["error"] == "timeout\ncalling model"  # whole in JSON
    assert rows[2]["lease_expires_at"] is not None and "T" in rows[2]["lease_expires_at"]
    assert {r["job_id"] for r in rows} == {job}
    assert result.stderr.splitlines() == [
        f"job {job}: 4 items: 1 queued, 1 running, 1 succeeded, 1 failed"]


def test_a_long_error_is_cut_in_text(cli: Callable[..., Result], conn: Conn) -> None:
    job = fanout(conn, [1])
    [(item, worker)] = conn.execute(CLAIM, (1,)).fetchall()
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s)", (item, worker, "x" * 500))
    [line] = cli("items", str(job)).stdout.splitlines()
    assert line.split("\t")[5] == "x" * 117 + "..."


def pages(cli: Callable[..., Result], job: int, *args: str) -> list[list[int]]:
    """Every page, following the `next page:` command stderr names."""
    seen: list[list[int]] = []
    command = ["items", str(job), *args]
    while True:
        result = cli(*command)
        assert result.exit_code == 0, result.output
        seen.append([int(line.split("\t")[0]) for line in result.stdout.splitlines()])
        following = [line for line in result.stderr.splitlines()
                     if line.startswith("next page: ")]
        if not following:
            return seen
        words = following[0].removeprefix("next page: ").split()
        assert words[:3] == ["pgjobs", "items", str(job)]
        command = words[1:]
        assert len(seen) < 20


def test_pages_follow_to_the_last_item(cli: Callable[..., Result], conn: Conn) -> None:
    job = fanout(conn, list(range(7)))
    fanout(conn, list(range(5)), scope="2")  # another job's items, interleaved in no page
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.job_items WHERE job_id = %s ORDER BY id", (job,))]
    seen = pages(cli, job, "--limit", "3")
    assert seen == [ids[0:3], ids[3:6], ids[6:7]]
    result = cli("items", str(job), "--limit", "3")
    assert f"next page: pgjobs items {job} --after {ids[2]} --limit 3" in result.stderr
    # A full last page says no next page: nothing follows it.
    assert pages(cli, job, "--limit", "7") == [ids]
    assert cli("items", str(job), "--after", str(ids[-1])).stdout == ""


def test_status_filter_pages_within_the_status(cli: Callable[..., Result],
                                               conn: Conn) -> None:
    job = fanout(conn, list(range(9)))
    claimed = conn.execute(CLAIM, (9,)).fetchall()
    failed = []
    for n, (item, worker) in enumerate(claimed):
        if n % 2:
            scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'no')", (item, worker))
            failed.append(item)
        else:
            scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (item, worker))
    seen = pages(cli, job, "--status", "failed", "--limit", "3")
    assert seen == [failed[0:3], failed[3:4]]
    result = cli("items", str(job), "--status", "failed", "--limit", "3")
    assert (f"next page: pgjobs items {job} --after {failed[2]} --status failed --limit 3"
            in result.stderr)
    assert f"job {job}: 9 items: 5 succeeded, 4 failed" in result.stderr
    assert cli("items", str(job), "--status", "queued").stdout == ""


def test_a_job_that_is_not_fan_out_is_a_usage_error(cli: Callable[..., Result],
                                                     conn: Conn) -> None:
    job = submit(conn)
    assert error_line(cli("items", str(job)), 2) == (
        f"error: job {job} is a custom job, not a fan-out job: it has no items [22023] "
        f"(hint: `pgjobs status {job}` shows its progress; items belong to jobs submitted "
        "with pgjobs.submit_items (docs/fanout.md))")
    # The article is the kind's (cli.common.a_job): "an import job", never "a import".
    imported = submit(conn, kind="import")
    assert error_line(cli("items", str(imported)), 2).startswith(
        f"error: job {imported} is an import job, not a fan-out job: it has no items [22023]")


def test_an_unknown_job_is_said_as_status_says_it(cli: Callable[..., Result]) -> None:
    said = error_line(cli("items", "987654321"), 1)
    assert said == error_line(cli("status", "987654321"), 1)
    assert said == f"error: job 987654321 does not exist [P0002] (hint: {UNKNOWN_JOB_HINT})"


def test_a_bad_status_is_a_usage_error(cli: Callable[..., Result]) -> None:
    result = cli("items", "1", "--status", "paused")
    assert result.exit_code == 2
    assert "[22023]" in result.stderr and "hint:" in result.stderr


Client = tuple[str, Callable[..., Result]]


@pytest.fixture
def clients(conn: Conn, dsn: str) -> Iterator[dict[str, Client]]:
    """Two clients with UPDATE only on the target (each sees its own jobs): the
    role's name, and the command line connecting as it."""
    make_target(conn)
    made = {name: make_role(conn, f"items_{name}", "GRANT pgjobs_client TO {role}",
                            "GRANT UPDATE ON items TO {role}") for name in ("a", "b")}

    def as_role(role: str) -> Callable[..., Result]:
        url = make_conninfo(dsn, options=f"-c role={role}")
        return lambda *args: CliRunner().invoke(main, ["--dsn", url, *args])
    yield {name: (role, as_role(role)) for name, role in made.items()}
    for role in made.values():
        drop_role(conn, role)


def test_a_client_sees_only_its_own_jobs_items(conn: Conn,
                                               clients: dict[str, Client]) -> None:
    (a, as_a), (b, as_b) = clients["a"], clients["b"]
    conn.execute(f"SET ROLE {a}")
    mine = fanout(conn, ["a1", "a2"])
    conn.execute(f"SET ROLE {b}")
    theirs = fanout(conn, ["b1"], scope="2")
    conn.execute("RESET ROLE")
    [(item, worker)] = conn.execute(CLAIM, (1,)).fetchall()  # a's first item fails
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'secret of a')", (item, worker))

    own = as_a("items", str(mine), "--json")
    assert own.exit_code == 0, own.output
    assert [json.loads(line)["payload"] for line in own.stdout.splitlines()] == ["a1", "a2"]
    absent = int(scalar(conn, "SELECT max(id) + 1000 FROM pgjobs.jobs"))
    for command in (["items", str(mine)], ["items", str(mine), "--json"],
                    ["items", str(mine), "--status", "failed"], ["status", str(mine)]):
        refused = error_line(as_b(*command), 1)
        never = error_line(as_b(*command[:1], str(absent), *command[2:]), 1)
        assert refused == never.replace(str(absent), str(mine)), command
        assert "secret" not in refused
    assert as_b("items", str(theirs)).exit_code == 0


def test_status_of_a_fan_out_job_counts_its_items(cli: Callable[..., Result],
                                                  conn: Conn) -> None:
    job, ids = mixed(conn)
    result = cli("status", str(job))
    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert "items: 4 items: 1 queued, 1 running, 1 succeeded, 1 failed" in lines
    # The error whole, its newline shown as \n (h158: a newline printed raw
    # would let an item's error forge a line of status).
    assert f"first_failed_item: {ids[1]}: timeout\\ncalling model" in lines
    as_json = json.loads(cli("status", str(job), "--json").stdout)
    assert "items" not in as_json and "first_failed_item" not in as_json  # the contract's row


def test_status_of_a_fan_out_job_without_failures(cli: Callable[..., Result],
                                                  conn: Conn) -> None:
    job = fanout(conn, [1, 2])
    lines = cli("status", str(job)).stdout.splitlines()
    assert "items: 2 items: 2 queued" in lines
    assert not any(line.startswith("first_failed_item") for line in lines)
    plain = submit(conn)
    assert not any(line.startswith("items:") for line in
                   cli("status", str(plain)).stdout.splitlines())


def plan(conn: Conn, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's nodes, flattened, with what each actually read."""
    [[explained]] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()
    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)
    walk(explained[0]["Plan"])
    return nodes


def assert_a_walk(nodes: list[dict[str, Any]], most: int) -> None:
    """Every scan of job_items that ran (the branches of the statuses not asked
    fold away, never executed) is a range of job_items_job_idx reading at most
    `most` rows, and nothing sorted more."""
    on_items = [n for n in nodes
                if n.get("Relation Name") == "job_items" and n["Actual Loops"] > 0]
    assert on_items, nodes
    for node in on_items:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), node
        assert node["Index Name"] == "job_items_job_idx", node
        assert node["Actual Rows"] * node["Actual Loops"] <= most, node
    # Nothing sorted the job's items: any sort is of the page's few rows.
    for node in nodes:
        if node["Node Type"] == "Sort":
            assert node["Actual Rows"] <= most, node


@pytest.mark.parametrize("role", ["admin", "client"])
def test_a_page_is_an_index_walk_of_the_page_only(conn: Conn, role: str,
                                                  clients: dict[str, Client]) -> None:
    a = clients["a"][0]
    if role == "client":
        conn.execute(f"SET ROLE {a}")
    big = fanout(conn, list(range(3000)))
    conn.execute("RESET ROLE")
    fanout(conn, list(range(6000)), scope="2")  # another's job, bigger
    small = fanout(conn, list(range(50)), scope="3")
    for (item, worker) in conn.execute(CLAIM, (200,)).fetchall():
        scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'no')", (item, worker))
    conn.execute("VACUUM ANALYZE pgjobs.job_items")
    conn.execute("ANALYZE pgjobs.jobs")
    if role == "client":
        conn.execute(f"SET ROLE {a}")
    middle = int(scalar(conn, "SELECT min(id) + 1500 FROM pgjobs.job_items WHERE job_id = %s",
                        (big,)))
    for status in (None, "queued", "failed"):
        nodes = plan(conn, queries.JOB_ITEMS_PAGE, {
            "id": big, "status": status, "after": middle, "limit": 51})
        # Each status's range read at most a page: 51 rows per status asked.
        assert_a_walk(nodes, 51 * (len(ITEM_STATUSES) if status is None else 1))
    assert_a_walk(plan(conn, queries.JOB_FIRST_FAILED_ITEM, {"id": big}), 1)
    # The counts read the job's entries, no other job's (for a job holding a
    # third of the table, a scan of it is the planner's cheaper choice).
    conn.execute("RESET ROLE")
    assert_a_walk(plan(conn, queries.JOB_ITEM_COUNTS, {"id": small}), 50)
    conn.execute("RESET ROLE")


def test_a_page_of_the_only_job_reads_no_other_status(conn: Conn) -> None:
    """One job holds every item, all queued: the statuses with no item are an
    empty range each, not a walk of job_items_pkey from --after filtering
    every later item (a status bound from a list looked like any status to
    the planner, which took that walk for the four empty ones)."""
    make_target(conn)
    job = fanout(conn, list(range(4000)))
    conn.execute("VACUUM ANALYZE pgjobs.job_items")
    middle = int(scalar(conn, "SELECT min(id) + 1000 FROM pgjobs.job_items"))
    for status in (None, "running", "failed"):
        nodes = plan(conn, queries.JOB_ITEMS_PAGE, {
            "id": job, "status": status, "after": middle, "limit": 51})
        assert sum(n.get("Rows Removed by Filter", 0) for n in nodes) == 0, nodes
        assert_a_walk(nodes, 51)


def test_a_page_after_the_statistics_went_stale_is_still_a_range(conn: Conn) -> None:
    """At the last ANALYZE every item was queued; 3,000 of 4,000 have succeeded
    since. A page of the queued ones is still a range of job_items_job_idx:
    said as `status = 'queued' AND id > after` in id order, the planner (which
    believes them all queued) walked job_items_pkey over the succeeded ones."""
    make_target(conn)
    job = fanout(conn, list(range(4000)))
    conn.execute("VACUUM ANALYZE pgjobs.job_items")
    for _ in range(3):
        claimed = conn.execute(CLAIM, (1000,)).fetchall()
        assert scalar(conn, "SELECT count(*) FROM pgjobs.complete_items(%s, %s)",
                      ([c[0] for c in claimed], [c[1] for c in claimed])) == 1000
    for status in ("queued", None):
        nodes = plan(conn, queries.JOB_ITEMS_PAGE, {
            "id": job, "status": status, "after": 0, "limit": 51})
        assert sum(n.get("Rows Removed by Filter", 0) for n in nodes) == 0, nodes
        assert_a_walk(nodes, 51 * (len(ITEM_STATUSES) if status is None else 1))


def test_on_a_terminal_a_header_and_aligned_columns(conn: Conn) -> None:
    """`pgjobs items` on a terminal: the rows the piped lines carry, under a
    header, each column as wide as its widest cell."""
    from pgjobs.cli.items import _table

    make_target(conn)
    job, ids = mixed(conn)
    rows = [dict(zip(("id", "status", "attempts", "worker", "lease_expires_at", "error"), r,
                     strict=True)) for r in conn.execute(
        "SELECT id, status, attempts, worker, lease_expires_at, error FROM pgjobs.job_items "
        "WHERE job_id = %s ORDER BY id", (job,))]
    lines = _table(rows)
    assert lines[0].split() == ["ID", "STATUS", "ATTEMPTS", "WORKER", "LEASE_EXPIRES_AT",
                                "ERROR"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [str(ids[0]), "succeeded"], [str(ids[1]), "failed"], [str(ids[2]), "running"],
        [str(ids[3]), "queued"]]
    status_at = lines[0].index("STATUS")
    assert {line.index(line.split()[1], len(line.split()[0])) for line in lines} == {status_at}
    assert lines[2].endswith("timeout calling model")
