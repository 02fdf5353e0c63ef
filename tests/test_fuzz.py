"""Fuzzing the client surface: random and hostile filters, options, scopes,
exclusion lists, payloads and CLI arguments.

- Valid input behaves like the Python reference (tests/support/filter_reference.py):
  the read path hides, and the delete engine deletes, exactly the reference
  row set (scope, cutoff, filter, exclusions).
- Invalid input raises 22023 (or a documented code: 42P01 unknown table,
  22P05 a NUL in JSON text, 54001 JSON nested deeper than PostgreSQL's
  parser allows) and writes nothing.
- No input executes SQL of its own: a canary table stays intact, and no
  new relation appears.
- The CLI exits 0, 1 or 2 with a one-line `error:` message, never a traceback.

Each property runs PGJOBS_FUZZ_EXAMPLES examples (default 300; the CLI
property a third as many); the full run
(`PGJOBS_FUZZ_EXAMPLES=3000 python -m pytest tests/test_fuzz.py`) runs
3 x 3000 + 1000 = 10,000. The documented size limits are checked at their boundary here too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors

from pgjobs.cli.main import main
from tests.support import Target, make_rows_target, scalar, seed, who
from tests.support.filter_reference import matches

Conn = psycopg.Connection[Any]
# Megabyte examples: let hypothesis report a failure without tripping on its size.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

EXAMPLES = int(os.environ.get("PGJOBS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# The SQLSTATEs invalid input may raise (docs/operations.md, "Limits").
DOCUMENTED = {"22023", "42P01", "22P05", "54001"}

HOSTILE = [
    "", " ", "'", "''", '"', "\\", "\\'", "';", "'; DROP TABLE canary; --",
    "x'); DROP TABLE canary; --", "1); DROP TABLE canary; --", "$$; DROP TABLE canary; $$",
    "$x$", "/*", "*/", "/* DROP TABLE canary */", "--", "-- x\n", "%", "_", "%_\\",
    "1 OR 1=1", "1' OR '1'='1", "null", "NULL", "true", "\n", "\t", "\r\n", "é", "中文",
    "😀", "\u202e", "\ufeff", "a.b", "a..b", "$not", "$or", "data", "id", "table_id",
    "INSERT INTO canary VALUES (666)", "'; INSERT INTO canary VALUES (666); --",
    "E'\\x00'", "\\u0000", "; SELECT pg_sleep(10); --",
]
SAFE_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")  # utf-8: no surrogates
hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(SAFE_CHARS, max_size=24),
                         st.sampled_from(HOSTILE).map(lambda s: s * 3))
# NUL only inside JSON (psycopg refuses NUL in text parameters client-side).
json_text = st.one_of(hostile_text, st.just("a\x00b"))

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=False, allow_infinity=False), json_text)
json_any = st.recursive(
    json_scalar,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(json_text, children, max_size=4)),
    max_leaves=12)


def _nest(depth: int, inner: Any, key: str = "$not") -> Any:
    for _ in range(depth):
        inner = {key: inner}
    return inner


class RawJSON(str):
    """JSON text passed as is (json.dumps would recurse too deep)."""


def dump(value: Any) -> str:
    return value if isinstance(value, RawJSON) else json.dumps(value)


BIG = "é" * 600_000  # 1.2 MB of UTF-8: over every size limit
big_or_deep = st.one_of(
    st.integers(0, 40).map(lambda d: _nest(d, {"k": 1})),
    st.integers(0, 40).map(lambda d: _nest(d, 1, key="nest")),
    st.sampled_from([{"k": BIG}, {"k": {"$in": list(range(10_001))}},
                     {"$or": [{"k": i} for i in range(1_001)]},
                     RawJSON('{"a": ' * 20_000 + "1" + "}" * 20_000),
                     RawJSON("[" * 200_000 + "]" * 200_000)]),
)
hostile_filter = st.one_of(json_any, big_or_deep,
                           st.dictionaries(hostile_text, json_any, max_size=4))
hostile_options = st.one_of(
    json_any,
    st.dictionaries(st.sampled_from(["priority", "max_attempts", "run_at", "on_conflict",
                                     "lease", "page_size", "page_ms", "strategy", "format",
                                     "columns", "gzip", "destination", "chunk_rows",
                                     "part_size", "handler"]) | hostile_text,
                    json_any, max_size=4))
hostile_scope = st.one_of(st.sampled_from(["1", "2", "3", "01", "-1", "2147483648", "1e3"]),
                          hostile_text, st.just("1" * 1001), st.just("x" * 1001))
hostile_exclude = st.one_of(st.lists(hostile_text, max_size=6),
                            st.lists(st.integers(-10**20, 10**20).map(str), max_size=6),
                            st.just([str(i) for i in range(100_001)]))

CALLS = {
    "submit_delete": "SELECT pgjobs.submit_delete(%(t)s::regclass, %(scope)s, %(filter)s::jsonb,"
                     " %(exclude)s::text[], %(options)s::jsonb)",
    "submit_backfill": "SELECT pgjobs.submit_backfill(%(t)s::regclass, %(scope)s,"
                       " %(filter)s::jsonb, %(set)s::jsonb, %(options)s::jsonb)",
    "submit_export": "SELECT pgjobs.submit_export(%(t)s::regclass, %(scope)s, %(filter)s::jsonb,"
                     " %(options)s::jsonb)",
    "submit": "SELECT pgjobs.submit(%(kind)s, %(t)s::regclass, %(scope)s, %(set)s::jsonb,"
              " %(options)s::jsonb)",
    "visible": "SELECT count(*) FROM pgjobs.visible(%(t)s::regclass, %(scope)s,"
               " %(filter)s::jsonb, %(after)s, %(limit)s)",
    "visible_count": "SELECT pgjobs.visible_count(%(t)s::regclass, %(scope)s, %(filter)s::jsonb)",
    "mask": "SELECT pgjobs.mask(%(t)s::regclass, %(scope)s)",
    "compile_filter": "SELECT pgjobs.compile_filter(%(t)s::regclass, %(filter)s::jsonb)",
}


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def world(conn: Conn) -> Iterator[dict[str, Target]]:
    """Two registered targets (bigint key + int scope; text key + text scope),
    seeded, and a canary table that a successful injection would change."""
    targets = {"ints": make_rows_target(conn, "user_table_rows"),
               "texts": make_rows_target(conn, "text_rows", key_type="text",
                                         scope_type="text")}
    for target in targets.values():
        seed(conn, target, 240)
    conn.execute("CREATE TABLE canary (n int); INSERT INTO canary VALUES (1)")
    before = _fingerprint(conn)
    yield targets
    assert _fingerprint(conn) == before


def _fingerprint(conn: Conn) -> tuple[Any, ...]:
    """The canary, the targets' content and the relations that exist."""
    row = conn.execute("""
        SELECT (SELECT array_agg(n) FROM canary),
               (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM user_table_rows t),
               (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM text_rows t),
               (SELECT array_agg(oid::regclass::text ORDER BY oid) FROM pg_class
                 WHERE relnamespace IN ('public'::regnamespace, 'pgjobs'::regnamespace)),
               (SELECT count(*) FROM pg_proc
                 WHERE pronamespace IN ('public'::regnamespace, 'pgjobs'::regnamespace))
    """).fetchone()
    assert row is not None
    return tuple(row)


def _jobs(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, status FROM pgjobs.jobs ORDER BY id").fetchall()


# --- invalid and hostile input --------------------------------------------------------


@st.composite
def hostile_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(CALLS)))
    params = {
        "t": draw(st.sampled_from(["user_table_rows", "text_rows", "public.text_rows"])
                  | st.sampled_from(["canary", "nope", '"; DROP TABLE canary; --"'])),
        "scope": draw(hostile_scope),
        "filter": dump(draw(hostile_filter)),
        "exclude": draw(hostile_exclude),
        "options": json.dumps(draw(hostile_options)),
        "set": dump(draw(st.one_of(hostile_filter, st.just({"k": BIG}),
                                   st.dictionaries(hostile_text, json_any, max_size=3)))),
        "kind": draw(st.sampled_from(["custom", "delete", "import"]) | hostile_text),
        "after": draw(st.none() | hostile_text),
        "limit": draw(st.sampled_from([1, 100, 10_000, 0, -1, 10_001, 2**31 - 1])),
    }
    return name, params


def test_hostile_input_raises_documented_errors_and_writes_nothing(
        conn: Conn, world: dict[str, Target]) -> None:
    outcomes: dict[str, int] = {}

    @FUZZ
    @given(call=hostile_calls())
    def check(call: tuple[str, dict[str, Any]]) -> None:
        name, params = call
        before = _jobs(conn)
        try:
            result = scalar(conn, CALLS[name], params)
        except psycopg.Error as exc:
            assert exc.sqlstate in DOCUMENTED, (name, exc.sqlstate, str(exc)[:300])
            assert exc.sqlstate != "22023" or exc.diag.message_hint, str(exc)[:300]
            assert _jobs(conn) == before
            outcomes[exc.sqlstate or "?"] = outcomes.get(exc.sqlstate or "?", 0) + 1
            return
        outcomes["ok"] = outcomes.get("ok", 0) + 1
        if name.startswith("submit"):
            assert [j[0] for j in _jobs(conn)] == [j[0] for j in before] + [result]
            assert scalar(conn, "SELECT pgjobs.cancel(%s)", (result,)) is True
        else:
            assert _jobs(conn) == before
        assert scalar(conn, "SELECT array_agg(n) FROM canary") == [1]

    check()
    assert outcomes.get("22023", 0) > 0, outcomes


# --- valid input against the reference ---------------------------------------------

COLUMNS = {"id", "table_id", "n", "label", "created_at", "data"}
STRINGS = ["", "label 1", "label 10", "label 5", "n1", "n12", "n3", "x", "'; --", "é", "N1"]
DOC_FIELDS = ["k", "name", "nest.a", "nest", "zz", "nest.a.b", "we'; --",
              "x'); DROP TABLE canary; --"]
numbers = st.integers(-2, 8)
doc_value = st.one_of(numbers, st.sampled_from(STRINGS), st.booleans(), st.none(),
                      st.just({"a": 1}), st.just([1]))
ordered = st.one_of(numbers, st.sampled_from(STRINGS))


def _ops(value: st.SearchStrategy[Any], order: st.SearchStrategy[Any],
         nullable: bool) -> st.SearchStrategy[dict[str, Any]]:
    eq_value = st.one_of(value, st.none()) if nullable else value
    op = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), eq_value),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), order),
        # never empty: an empty $nin (or a negated empty $in) is refused
        # (tests/test_trust_empty_operands.py)
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(eq_value, min_size=1, max_size=4)),
        st.tuples(st.just("$contains"), st.sampled_from(["1", "n", "L", "'", "%", "_", "é"])),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    return st.lists(op, min_size=1, max_size=2).map(dict)


def _cond(value: st.SearchStrategy[Any], order: st.SearchStrategy[Any],
          nullable: bool = True) -> st.SearchStrategy[Any]:
    ops = _ops(value, order, nullable)
    return st.one_of(value, ops, ops.map(lambda o: {"$not": o}))


field_entry = st.one_of(
    st.tuples(st.sampled_from(DOC_FIELDS), _cond(doc_value, ordered)),
    st.tuples(st.just("n"), _cond(numbers, numbers)),
    st.tuples(st.just("id"), _cond(st.integers(0, 250), st.integers(0, 250))),
    st.tuples(st.just("label"), _cond(st.sampled_from(STRINGS), st.sampled_from(STRINGS))),
)
leaf = st.lists(field_entry, max_size=2).map(dict)
# Nested nodes always hold a condition: a branch {} of an $or is refused
# (tests/test_trust_empty_operands.py).
valid_filters = st.recursive(
    st.lists(field_entry, min_size=1, max_size=2).map(dict),
    lambda children: st.one_of(
        st.tuples(leaf, st.sampled_from(["$and", "$or"]),
                  st.lists(children, min_size=1, max_size=3))
        .map(lambda t: {**t[0], t[1]: t[2]}),
        st.tuples(leaf, children).map(lambda t: {**t[0], "$not": t[1]})),
    max_leaves=6)


def _rows(conn: Conn) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT id, table_id, n, label, data, created_at <= now() AS old"
                       " FROM user_table_rows")
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _ranks(conn: Conn, rows: list[dict[str, Any]]) -> dict[str, int]:
    strings = STRINGS + [r["label"] for r in rows] + [
        v for r in rows if r["data"] for v in r["data"].values() if isinstance(v, str)]
    ordered_ = conn.execute("SELECT s FROM unnest(%s::text[]) s GROUP BY s ORDER BY s",
                            (strings,)).fetchall()
    return {s: i for i, (s,) in enumerate(ordered_)}


def test_valid_deletes_match_the_reference(conn: Conn, world: dict[str, Target]) -> None:
    """Per example, in one transaction rolled back afterwards: submit_delete,
    read through visible/visible_count (the mask), run every page of the job,
    and compare both with the reference row set."""
    rows = _rows(conn)
    ranks = _ranks(conn, rows)
    keys = sorted(r["id"] for r in rows)

    @FUZZ
    @given(flt=valid_filters, scope=st.sampled_from([1, 2, 3]),
           exclude=st.lists(st.sampled_from(keys) | st.integers(10_000, 10_100), max_size=8),
           page_size=st.sampled_from([None, 1, 7, 1000]))
    def check(flt: dict[str, Any], scope: int, exclude: list[int],
              page_size: int | None) -> None:
        doomed = {r["id"] for r in rows
                  if r["table_id"] == scope and r["old"] and r["id"] not in exclude
                  and matches(r, flt, COLUMNS, "data", str_key=ranks.__getitem__)}
        in_scope = {r["id"] for r in rows if r["table_id"] == scope}
        # Random filters name fields no row has, and exclude lists keys of no
        # row or of another scope: the typo guards would refuse them
        # (tests/test_unknown_fields.py, tests/test_trust_exclude_keys.py);
        # here their semantics are checked.
        options: dict[str, Any] = {"allow_unknown_fields": True, "allow_unknown_keys": True}
        if page_size is not None:
            options["page_size"] = page_size
        with conn.transaction(force_rollback=True):
            job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                  " %s::text[], %s::jsonb)",
                            (str(scope), json.dumps(flt), [str(k) for k in exclude],
                             json.dumps(options)))
            seen = {int(r[0]) for r in conn.execute(
                "SELECT v ->> 'id' FROM pgjobs.visible('user_table_rows', %s, '{}', NULL, 10000) v",
                (str(scope),)).fetchall()}
            assert seen == in_scope - doomed, flt
            assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', %s)",
                          (str(scope),)) == len(in_scope - doomed)
            conn.execute("SELECT pgjobs._claim_id(%s, 'fuzz')", (job_id,))
            for _ in range(1000):
                state = scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                               (job_id, who(conn, job_id, 'fuzz')))
                if state not in ("more", "retry"):
                    break
            assert state == "done", state
            left = {r[0] for r in conn.execute(
                "SELECT id FROM user_table_rows WHERE table_id = %s", (scope,)).fetchall()}
            assert left == in_scope - doomed, flt
            assert scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s",
                          (job_id,)) == len(doomed)

    check()


def test_valid_filters_read_like_the_reference_on_text_keys(
        conn: Conn, world: dict[str, Target]) -> None:
    """visible_count and compile_filter agree with the reference on the
    text-keyed, text-scoped target (no job: reads only)."""
    cur = conn.execute("SELECT id, table_id, n, label, data FROM text_rows")
    assert cur.description is not None
    names = [c.name for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    ranks = _ranks(conn, rows)

    @FUZZ
    @given(flt=valid_filters.filter(lambda f: "id" not in json.dumps(f)),
           scope=st.sampled_from(["tenant-1", "tenant-2", "tenant-3", "tenant-4"]))
    def check(flt: dict[str, Any], scope: str) -> None:
        want = sum(1 for r in rows if r["table_id"] == scope
                   and matches(r, flt, COLUMNS, "data", str_key=ranks.__getitem__))
        assert scalar(conn, "SELECT pgjobs.visible_count('text_rows', %s, %s::jsonb)",
                      (scope, json.dumps(flt))) == want, flt

    check()


# --- the documented limits, at their boundary --------------------------------------


def _raises_22023(conn: Conn, sql: str, params: Any, needle: str) -> None:
    before = _jobs(conn)
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute(sql, params)
    assert needle in str(exc.value), str(exc.value)[:300]
    assert exc.value.diag.message_hint
    assert _jobs(conn) == before


def test_size_limits_are_documented_and_inclusive(conn: Conn, world: dict[str, Target]) -> None:
    submit = "SELECT pgjobs.submit('custom', 'text_rows', %s, %s::jsonb)"
    # payload: 1 MiB of JSON text
    fits = {"p": "x" * (1_048_576 - len('{"p": ""}'))}
    assert len(json.dumps(fits)) == 1_048_576
    conn.execute(submit, ("tenant-1", json.dumps(fits)))
    _raises_22023(conn, submit, ("tenant-1", json.dumps({"p": fits["p"] + "x"})), "1 MiB")
    # scope: 1000 characters
    conn.execute(submit, ("é" * 1000, "{}"))
    _raises_22023(conn, submit, ("é" * 1001, "{}"), "1000 characters")
    # exclude: 100,000 keys (most of no row of the scope: allow_unknown_keys)
    delete = ("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', %s::text[],"
              " '{\"on_conflict\": \"queue\", \"allow_unknown_keys\": true}')")
    job_id = scalar(conn, delete, ([str(i) for i in range(100_000)],))
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    _raises_22023(conn, delete, ([str(i) for i in range(100_001)],), "100000")
    # filter: 64 KiB, depth 16, $in 10,000 (tests/test_filter.py checks these
    # in detail; here through a submit function)
    _raises_22023(conn, "SELECT pgjobs.submit_export('text_rows', 'tenant-1', %s::jsonb)",
                  (json.dumps({"k": "x" * 70_000}),), "too large")
    _raises_22023(conn, "SELECT pgjobs.submit_export('text_rows', 'tenant-1', %s::jsonb)",
                  (json.dumps(_nest(17, {"k": 1})),), "deeper than 16")
    docs = (os.path.join(os.path.dirname(__file__), "..", "docs", "operations.md"))
    with open(docs, encoding="utf-8") as fh:
        limits = fh.read().split("## Limits", 1)[1]
    for text in ("1 MiB", "1000 characters", "100,000", "65,536", "16", "10,000", "22P05",
                 "54001"):
        assert text in limits, text


def test_nul_and_absurd_nesting_fail_before_pgjobs_runs(
        conn: Conn, world: dict[str, Target]) -> None:
    before = _jobs(conn)
    with pytest.raises(errors.UntranslatableCharacter):  # 22P05, at the ::jsonb cast
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
                     (json.dumps({"label": "a\x00b"}),))
    with pytest.raises(psycopg.DataError, match="NUL"):  # refused by psycopg itself
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', %s)", ("1\x00",))
    with pytest.raises(errors.StatementTooComplex):  # 54001, the jsonb parser's stack
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
                     ("[" * 200_000 + "]" * 200_000,))
    assert _jobs(conn) == before


# --- the CLI ------------------------------------------------------------------------

cli_text = st.one_of(st.sampled_from(HOSTILE), st.text(SAFE_CHARS, max_size=16))
cli_filter = st.one_of(
    st.none(),
    # (not thousands of levels deep: see test_cli_deeply_nested_json_is_a_usage_error)
    hostile_filter.map(dump).filter(lambda f: len(f) < 200_000 and f.count("{") < 500),
    valid_filters.map(json.dumps),
    cli_text,  # mostly not JSON at all
    st.sampled_from(["{", "{'a': 1}", "[1,", "{\"a\": }", "NaN", "{\"a\": 1} x", "\"\\u0000\""]))


def _cli(dsn: str, args: list[str]) -> Any:
    return CliRunner().invoke(main, ["--dsn", dsn, *args], catch_exceptions=True)


def _assert_clean(result: Any, args: list[str]) -> None:
    assert result.exit_code in (0, 1, 2), (args, result.output, result.exception)
    assert "Traceback" not in result.output, (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, repr(result.exception))
    if result.exit_code != 0:
        if result.stderr.startswith("Usage:"):  # click's own usage errors
            assert "\nError: " in result.stderr, (args, result.stderr)
        else:  # pgjobs' errors: exactly one line
            lines = result.stderr.rstrip("\n").split("\n")  # not splitlines: \x1e is no break
            assert lines[-1].startswith("error: ") and all(
                not line.startswith(" ") for line in lines), (args, result.stderr)
            assert len([line for line in lines if line.startswith("error:")]) == 1, (
                args, result.stderr)


def test_cli_arguments(dsn: str, conn: Conn, world: dict[str, Target]) -> None:
    codes: dict[int, int] = {}

    @settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
    @given(target=st.sampled_from(["user_table_rows", "text_rows"]) | cli_text,
           scope=st.sampled_from(["1", "tenant-2"]) | cli_text | st.just("9" * 1001),
           flt=cli_filter,
           exclude=st.lists(cli_text | st.integers(0, 300).map(str), max_size=4),
           extra=st.none() | hostile_options.map(json.dumps) | cli_text,
           page_size=st.none() | st.sampled_from(["0", "1", "100001", "x", "-5"]))
    def check(target: str, scope: str, flt: str | None, exclude: list[str],
              extra: str | None, page_size: str | None) -> None:
        args = ["delete", target, "--scope", scope]
        if flt is not None:
            args += ["--filter", flt]
        for key in exclude:
            args += ["--exclude", key]
        if extra is not None:
            args += ["--options", extra]
        if page_size is not None:
            args += ["--page-size", page_size]
        before = _jobs(conn)
        result = _cli(dsn, args)
        _assert_clean(result, args)
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
        if result.exit_code == 0:
            job_id = int(result.stdout.strip())
            assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
        else:
            assert _jobs(conn) == before

    check()
    assert codes.get(2, 0) > 0, codes


def test_cli_deeply_nested_json_is_a_usage_error(dsn: str) -> None:
    args = ["delete", "user_table_rows", "--scope", "1", "--filter", "[" * 100_000]
    result = _cli(dsn, args)
    _assert_clean(result, args)
    assert result.exit_code == 2


@pytest.mark.parametrize("extra", ["true", "5", '"ab"', "[1]"])
def test_cli_options_must_be_an_object(dsn: str, extra: str) -> None:
    args = ["delete", "user_table_rows", "--scope", "1", "--options", extra]
    result = _cli(dsn, args)
    _assert_clean(result, args)
    assert result.exit_code == 2


def test_cli_hostile_names_exit_cleanly(dsn: str, conn: Conn,
                                        world: dict[str, Target]) -> None:
    """Every hostile string as the target, the scope, a filter field and value,
    an exclusion and an option: clean exits, canary intact (the fixture)."""
    for text in HOSTILE:
        for args in (["delete", text, "--scope", "1"],
                     ["delete", "text_rows", "--scope", text],
                     ["delete", "text_rows", "--scope", "tenant-1",
                      "--filter", json.dumps({text or "k": text})],
                     ["delete", "user_table_rows", "--scope", "1", "--exclude", text],
                     ["delete", "user_table_rows", "--scope", "1",
                      "--options", json.dumps({text: 1})],
                     ["backfill", "text_rows", "--scope", "tenant-1", "--filter", "{}",
                      "--set", json.dumps({text or "k": text})]):
            result = _cli(dsn, args)
            _assert_clean(result, args)
            if result.exit_code == 0:
                conn.execute("SELECT pgjobs.cancel(%s)", (int(result.stdout.strip()),))
