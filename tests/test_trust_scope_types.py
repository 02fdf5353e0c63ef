"""Scope columns of odd types, attacked at every entry point (h180).

pgjobs._canonical_scope casts a scope to the scope column's full type and
prints it back; that is the one mechanism behind every entry point. It holds
only for types whose text input reads a value exactly (or refuses it with a
data exception) and whose printed text names the same value tomorrow. So:

* A type that registers has one canonical scope however it is spelled
  (`10.0.0.1/32` is `10.0.0.1`, `yes` is `true`, `1.0` is `1`, a time zone
  spelling is the same instant), a text that is no value of it is refused
  with 22023 and a hint (never another class, never some other tenant), and
  a client confined to tenant 1 gets 42501 for tenant 2 however spelled,
  never an effect on it: submit, cancel, visible, visible_count, mask,
  preview, canonical_scope, the job rows and the exclusions.
* A type whose input is not like that is refused by register_target (22023,
  a hint): the oid-alias types (regclass, regtype, regproc, regrole, ...)
  read a name through the catalog (a name no relation has raises 42P01, a
  bad one 42601 or 42602, and after a rename the stored text names another
  table: a delete of tenant `public.ta` deleted the rows of the table later
  renamed to `ta`), xid8 reads any junk as some number (`zzz` is tenant 0,
  `1 2` tenant 1) and "char" keeps the first byte (`acme` is tenant `a`);
  and the types pgjobs cannot compare as one spelling (tsquery, tsvector,
  arrays, ranges, jsonb, citext).
* A target registered with such a scope before (an upgraded install) is
  refused at every entry point with 22023, and canonical_scope and the
  job-row policy never raise the input's error.
* Keys of an oid-alias type are stored by oid (an excluded row stays
  through a rename), and an enum scope whose labels are swapped under a
  queued job fails the job rather than move it to the other tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import build_target, run_job, scalar
from tests.support.roles import drop_role, in_role, make_role

Conn = psycopg.Connection[Any]

# name: (declarations, column type, tenant 1 canonical, spellings of tenant 1,
#        tenant 2 canonical, spellings of tenant 2, texts that are no value of it)
TYPES: dict[str, tuple[str, str, str, list[str], str, list[str], list[str]]] = {
    "oid": ("", "oid", "7", ["7", "007", " 7 ", "+7"], "8", ["8", "08"],
            ["x", "", "7.0", "1e1", "99999999999"]),
    "inet": ("", "inet", "10.0.0.1", ["10.0.0.1", "10.0.0.1/32", "010.0.0.1"],
             "10.0.0.2", ["10.0.0.2/32"], ["10.0.0.256", "x", "", "10.0.0.1/33", "10.1",
                                           " 10.0.0.1"]),
    "cidr": ("", "cidr", "10.0.0.0/8", ["10.0.0.0/8", "10/8", "10.0/8", "10"],
             "10.0.0.0/16", ["10.0/16"], ["10.0.0.1/8", "x", ""]),
    "numeric": ("", "numeric", "1", ["1", "1.0", "01.00", "+1.000", "1e0"], "1.01",
                ["1.010", "+1.01"], ["x", "", "1,0", "1 0"]),
    "boolean": ("", "boolean", "true", ["true", "t", "yes", "on", "1", "TRUE", " y "],
                "false", ["f", "no", "off", "0"], ["x", "", "2", "tr ue"]),
    "bytea": ("", "bytea", "\\x01", ["\\x01", "\\001"], "\\x02", ["\\002"],
              ["\\x0", "\\xzz", "\\X01"]),
    "date": ("", "date", "2030-01-02", ["2030-01-02", "20300102", " 2030-1-2"],
             "2030-01-03", ["20300103"], ["2030-02-30", "x", ""]),
    "timestamptz": ("", "timestamptz", "2030-01-02T00:00:00+00:00",
                    ["2030-01-02 00:00:00+00", "2030-01-02 01:00+01", "2030-01-01 19:00 EST",
                     "2030-01-02 00:00 UTC", "2030-01-01 16:00 America/Los_Angeles"],
                    "2030-01-03T00:00:00+00:00", ["2030-01-03 00:00 UTC"],
                    ["2030-01-02 00:00 Nowhere/Zone", "x", ""]),
    "domain over int with a check": ("CREATE DOMAIN h180_pos AS integer CHECK (VALUE > 0)",
                                     "h180_pos", "1", ["1", "01", " +1"], "2", ["02"],
                                     ["0", "-1", "x", ""]),
    "enum": ("CREATE TYPE h180_mood AS ENUM ('sad', 'ok', 'happy')", "h180_mood", "sad",
             ["sad"], "happy", ["happy"], ["SAD", " sad", "x", ""]),
    # name keeps at most 63 bytes: a longer text is no value of it (as a
    # char(8) scope 'acme0001x' is not), never the tenant it would cut to
    "name": ("", "name", "x" * 63, ["x" * 63], "y", ["y"],
             ["x" * 63 + "TAIL", "x" * 64, "x" * 62 + "\u00e9"]),
    "macaddr": ("", "macaddr", "08:00:2b:01:02:03",
                ["08:00:2b:01:02:03", "08-00-2B-01-02-03", "08002b010203", "0800.2b01.0203"],
                "08:00:2b:01:02:04", ["08002B010204"], ["x", "", "08:00:2b:01:02"]),
}

# Scope column types register_target refuses (22023, a hint): (declarations, type).
REFUSED: dict[str, tuple[str, str]] = {
    "regclass": ("", "regclass"),
    "regtype": ("", "regtype"),
    "regproc": ("", "regproc"),
    "regprocedure": ("", "regprocedure"),
    "regrole": ("", "regrole"),
    "regnamespace": ("", "regnamespace"),
    "regconfig": ("", "regconfig"),
    "domain over regclass": ("CREATE DOMAIN h180_rel AS regclass", "h180_rel"),
    "xid8": ("", "xid8"),
    '"char"': ("", '"char"'),
    "tsquery": ("", "tsquery"),
    "tsvector": ("", "tsvector"),
    "integer[]": ("", "integer[]"),
    "text[]": ("", "text[]"),
    "int4range": ("", "int4range"),
    "jsonb": ("", "jsonb"),
    "citext": ("CREATE EXTENSION IF NOT EXISTS citext", "citext"),
}

# Entry points that take a scope; %(t)s the target, %(s)s the scope.
ENTRIES: dict[str, str] = {
    "submit_delete": "SELECT pgjobs.submit_delete(%(t)s, %(s)s, '{}', '{}', "
                     "'{\"on_conflict\": \"queue\"}')",
    "visible_count": "SELECT pgjobs.visible_count(%(t)s, %(s)s)",
    "visible": "SELECT count(*) FROM pgjobs.visible(%(t)s, %(s)s)",
    "mask": "SELECT pgjobs.mask(%(t)s, %(s)s)",
    "preview": "SELECT pgjobs.preview(%(t)s, %(s)s) ->> 'matches'",
    "channel": "SELECT pgjobs.channel(%(t)s, %(s)s) IS NOT NULL",
}


def _outcome(conn: Conn, sql: str, params: dict[str, Any], role: str | None = None,
             scopes: str | None = None) -> tuple[str, Any]:
    """('ok', the value; for a submit the scope its job stored) or
    (SQLSTATE, (message, hint)), run as ``role`` confined to ``scopes``."""
    try:
        if role is None:
            with conn.transaction():
                value = scalar(conn, sql, params)
        else:
            with in_role(conn, role, scopes=scopes):
                value = scalar(conn, sql, params)
    except psycopg.Error as exc:
        return (str(exc.sqlstate), (exc.diag.message_primary, exc.diag.message_hint))
    if "pgjobs.submit_" in sql:
        value = scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (value,))
    return ("ok", value)


@pytest.fixture(params=sorted(TYPES))
def world(request: pytest.FixtureRequest, conn: Conn) -> Iterator[dict[str, Any]]:
    """A table scoped by the type under test, tenants 1 and 2 (three rows
    each), a pgjobs_client with every right on it, and a job of tenant 2."""
    name = request.param
    declarations, column, one, _, two, _, _ = TYPES[name]
    if declarations:
        conn.execute(declarations)
    target = build_target(conn, "odd", f"""id bigint NOT NULL, tenant {column} NOT NULL,
        data jsonb, created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""",
                          scope="tenant", document="data")
    for tenant, first in ((one, 1), (two, 11)):
        conn.execute("INSERT INTO odd (id, tenant, data) SELECT g, %s, '{\"k\": 1}' "
                     "FROM generate_series(%s::int, %s::int) g", (tenant, first, first + 2))
    client = make_role(conn, "odd", "GRANT pgjobs_client TO {role}",
                       "GRANT SELECT, INSERT, UPDATE, DELETE ON odd TO {role}")
    theirs = int(scalar(conn, "SELECT pgjobs.submit_delete('odd', %s, '{}', ARRAY['11'])",
                        (two,)))
    yield {"type": name, "target": target, "client": client, "theirs": theirs}
    drop_role(conn, client)


def test_one_canonical_scope_a_clear_refusal_and_no_other_tenant(
        conn: Conn, world: dict[str, Any]) -> None:
    _, _, one, ones, two, twos, junk = TYPES[world["type"]]
    client, wrong = world["client"], {}
    for entry, sql in ENTRIES.items():
        canonical = _outcome(conn, sql, {"t": "odd", "s": one}, client, one)
        if canonical[0] != "ok" or (entry == "submit_delete" and canonical[1] != one):
            wrong[f"{entry} {one!r}"] = canonical
        for spelling in ones:
            for scopes in (one, ", ".join(ones)):  # the confinement spelt oddly too
                got = _outcome(conn, sql, {"t": "odd", "s": spelling}, client, scopes)
                if got != canonical:
                    wrong[f"{entry} {spelling!r} in {scopes!r}"] = got
        for spelling in [two, *twos]:
            got = _outcome(conn, sql, {"t": "odd", "s": spelling}, client, one)
            if got[0] != "42501":
                wrong[f"{entry} tenant 2 {spelling!r}"] = got
        for spelling in junk:
            for role, scopes in ((None, None), (client, None), (client, one)):
                got = _outcome(conn, sql, {"t": "odd", "s": spelling}, role, scopes)
                if got[0] not in (("22023",) if scopes is None else ("22023", "42501")) \
                        or (got[0] == "22023" and not got[1][1]):
                    wrong[f"{entry} junk {spelling!r} as {role and 'client'} in {scopes}"] = got
        conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() "
                     "WHERE status = 'queued' AND id <> %s", (world["theirs"],))
    # canonical_scope: the text a submit stores, NULL for a non-value.
    for spelling, expected in [*((s, one) for s in ones), *((s, two) for s in twos),
                               *((s, None) for s in junk)]:
        got = _outcome(conn, "SELECT pgjobs.canonical_scope(%(t)s, %(s)s)",
                       {"t": "odd", "s": spelling}, client, one)
        if got != ("ok", expected):
            wrong[f"canonical_scope {spelling!r}"] = got
    assert wrong == {}


def test_tenant_2_is_out_of_the_confined_clients_reach(conn: Conn, world: dict[str, Any]) -> None:
    _, _, one, ones, two, _, _ = TYPES[world["type"]]
    client, theirs = world["client"], world["theirs"]
    reads = {
        "jobs": "SELECT count(*) FROM pgjobs.jobs WHERE id = %(j)s",
        "exclusions": "SELECT count(*) FROM pgjobs.job_exclusions WHERE job_id = %(j)s",
        "stats": "SELECT position(%(two)s IN pgjobs.stats()::text) + "
                 "(SELECT count(*) FROM pgjobs.jobs WHERE scope <> %(one)s)",
    }
    params = {"j": theirs, "one": one, "two": f'"{two}"'}
    seen = {name: _outcome(conn, sql, params, client, one) for name, sql in reads.items()}
    assert seen == {name: ("ok", 0) for name in reads}, seen
    for verb in ("cancel", "pause"):
        got = _outcome(conn, f"SELECT pgjobs.{verb}(%(j)s)", params, client, one)
        assert got[0] == "P0002", (verb, got)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (theirs,)) == "queued"
    # Its own delete, spelt oddly, deletes tenant 1's rows and only those;
    # tenant 2's job then keeps its excluded row.
    with in_role(conn, client, scopes=one):
        mine = int(scalar(conn, "SELECT pgjobs.submit_delete('odd', %s)", (ones[-1],)))
    run_job(conn, mine)
    assert scalar(conn, "SELECT count(*) FROM odd WHERE tenant = %s", (one,)) == 0
    assert scalar(conn, "SELECT count(*) FROM odd WHERE tenant = %s", (two,)) == 3
    run_job(conn, theirs)
    assert conn.execute("SELECT id FROM odd ORDER BY id").fetchall() == [(11,)]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_scope_type_without_one_exact_spelling_is_refused_at_registration(
        conn: Conn, name: str) -> None:
    declarations, column = REFUSED[name]
    if declarations:
        conn.execute(declarations)
    conn.execute(f"""CREATE TABLE refused (id bigint NOT NULL, tenant {column} NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now())""")
    try:
        conn.execute("CREATE INDEX ON refused (tenant, id)")
    except psycopg.errors.UndefinedObject:  # no btree at all: not a scope either
        return
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.register_target('refused', 'id', 'tenant', 'created_at')")
    assert "cannot be the scope" in str(exc.value.diag.message_primary), exc.value
    assert exc.value.diag.message_hint


# Registered before the refusal (an upgraded install): the registration row
# written as the old register_target wrote it.
OLD_REGISTRATIONS = {"regclass": "regclass", "regrole": "regrole", "xid8": "xid8",
                     '"char"': '"char"'}


@pytest.fixture(params=sorted(OLD_REGISTRATIONS))
def old(request: pytest.FixtureRequest, conn: Conn) -> Iterator[dict[str, Any]]:
    column = OLD_REGISTRATIONS[request.param]
    build_target(conn, "old", f"""id bigint NOT NULL, tenant {column} NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""",
                 scope="tenant", register=False)
    conn.execute("""INSERT INTO pgjobs.target_registry (target, key_column, scope_column,
                        created_at_column, key_type, scope_type, options)
                    VALUES ('old', 'id', 'tenant', 'created_at', 'bigint'::regtype,
                            %s::regtype, '{}')""", (column,))
    client = make_role(conn, "old", "GRANT pgjobs_client TO {role}",
                       "GRANT SELECT, INSERT, UPDATE, DELETE ON old TO {role}")
    yield {"type": request.param, "client": client}
    drop_role(conn, client)


def test_an_old_registration_of_such_a_scope_is_refused_everywhere(
        conn: Conn, old: dict[str, Any]) -> None:
    client, wrong = old["client"], {}
    for entry, sql in ENTRIES.items():
        for spelling in ("pg_class", "no_such_relation", "a b", "zzz", "1 2", ""):
            for role in (None, client):
                got = _outcome(conn, sql, {"t": "old", "s": spelling}, role)
                if got[0] != "22023" or not got[1][1]:
                    wrong[f"{entry} {spelling!r} as {role and 'client'}"] = got
    # The table did not change: the refusal must not say only that it did.
    got = _outcome(conn, "SELECT pgjobs._target('old') IS NULL", {})
    assert got[0] == "22023" and "this release refuses what it was registered with" in (
        got[1][0]), got
    # Reads that canonicalise every entry of pgjobs.allowed_scopes for every
    # registered target: never the input's error (a client's every read of
    # pgjobs.jobs would fail for one such registration).
    for spelling in ("pg_class", "no_such_relation", "a b", "zzz"):
        for sql in ("SELECT pgjobs.canonical_scope('old', %(s)s) IS NULL",
                    "SELECT count(*) = 0 FROM pgjobs.jobs"):
            got = _outcome(conn, sql, {"s": spelling}, client, spelling)
            if got[0] not in ("ok", "22023"):
                wrong[f"{sql} {spelling!r}"] = got
    assert wrong == {}


def test_a_regclass_scope_renamed_under_a_job_never_moves_it_to_another_tenant(
        conn: Conn) -> None:
    """The attack: tenant `public.ta`'s delete queued, then `ta` renamed away
    and tenant `tb`'s table renamed to `ta`. The job stored the name, and
    its page read the name again: it deleted tb's rows and succeeded. Now
    the submit is refused (22023), and so is every use of the target a page
    makes (pgjobs._target), so a job queued before the upgrade fails at its
    next page instead."""
    conn.execute("CREATE TABLE ta (); CREATE TABLE tb ()")
    build_target(conn, "rel", """id bigint NOT NULL, tenant regclass NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""",
                 scope="tenant", register=False)
    conn.execute("""INSERT INTO pgjobs.target_registry (target, key_column, scope_column,
                        created_at_column, key_type, scope_type, options)
                    VALUES ('rel', 'id', 'tenant', 'created_at', 'bigint'::regtype,
                            'regclass'::regtype, '{}')""")
    conn.execute("INSERT INTO rel (id, tenant) SELECT g, 'ta' FROM generate_series(1, 3) g")
    conn.execute("INSERT INTO rel (id, tenant) SELECT g, 'tb' FROM generate_series(4, 6) g")
    tb = scalar(conn, "SELECT 'tb'::regclass::oid")
    try:
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('rel', 'public.ta')")
    except psycopg.errors.InvalidParameterValue as exc:
        assert "cannot be the scope" in str(exc.diag.message_primary), exc
        assert exc.diag.message_hint
        job_id = None
    conn.execute("ALTER TABLE ta RENAME TO ta_old; ALTER TABLE tb RENAME TO ta")
    if job_id is not None:
        run_job(conn, job_id)
    assert scalar(conn, "SELECT count(*) FROM rel WHERE tenant::oid = %s", (tb,)) == 3
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs._target('rel')")


def test_a_regclass_key_renamed_under_a_job_keeps_the_excluded_row(conn: Conn) -> None:
    """The key's side of the oid-alias class: a delete of tenant 1 keeping
    (exclude) the row of table `public.ka`; then `ka` renamed away and
    `kb` renamed to `ka`. The job stored the name: its page kept kb's row
    and deleted the excluded one, and succeeded. A key is stored by what
    names it for good (its oid), so the excluded row stays whatever is
    renamed. And an exclude key naming no relation is refused with 22023
    and a hint, not the raw 42P01."""
    conn.execute("CREATE TABLE ka (); CREATE TABLE kb (); CREATE TABLE kc ()")
    build_target(conn, "rk", """id regclass NOT NULL, tenant integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""",
                 scope="tenant")
    conn.execute("INSERT INTO rk (id, tenant) VALUES ('ka', 1), ('kb', 1), ('kc', 1)")
    ka = scalar(conn, "SELECT 'ka'::regclass::oid")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('rk', '1', '{}', ARRAY['public.ka'])")
    conn.execute("ALTER TABLE ka RENAME TO ka_old; ALTER TABLE kb RENAME TO ka")
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert [r[0] for r in conn.execute("SELECT id::oid FROM rk").fetchall()] == [ka]
    for key in ("no_such_relation", "ka_old", "a b", ""):  # (ka_old is public's: unqualified)
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            conn.execute("SELECT pgjobs.submit_delete('rk', '1', '{}', ARRAY[%s])", (key,))
        assert exc.value.diag.message_hint, exc.value


def test_an_enum_scope_whose_labels_are_swapped_under_a_job_fails_it(conn: Conn) -> None:
    """The enum's side of the rename class: tenant 'sad''s delete queued,
    then the labels 'sad' and 'happy' swapped by three renames. The job
    stored the label; it fails (its compiled columns changed) and deletes
    nothing, never the rows now labelled 'sad'. Held."""
    conn.execute("CREATE TYPE h180_mood AS ENUM ('sad', 'ok', 'happy')")
    build_target(conn, "moods", """id bigint NOT NULL, tenant h180_mood NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""",
                 scope="tenant")
    conn.execute("INSERT INTO moods VALUES (1, 'sad'), (2, 'sad'), (3, 'happy'), (4, 'happy')")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('moods', 'sad')")
    conn.execute("ALTER TYPE h180_mood RENAME VALUE 'sad' TO 'tmp';"
                 " ALTER TYPE h180_mood RENAME VALUE 'happy' TO 'sad';"
                 " ALTER TYPE h180_mood RENAME VALUE 'tmp' TO 'happy'")
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "failed"
    assert scalar(conn, "SELECT count(*) FROM moods") == 4
