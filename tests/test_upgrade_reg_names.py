"""A job queued by a release before stop 65 keeps the names of its reg* keys.

Stop 65 stores a key of an oid-alias type (regclass, regtype, ...) by its
oid: the exclude list (jobs.survivors.exclude and the predicate's array
literal) and a filter value's literal. A job queued before it stored the
names (as pgjobs printed them, schema-qualified: 'public.ka') and its pages
read them again, so a rename between the upgrade and the job's end moves
an excluded key (or a filter value) to another table's row. Migration 0195
rewrites such a job's stored names to oids, once: this test installs the
previous release, queues a delete, writes its stored keys back as the
release before stop 65 wrote them, upgrades, swaps two tables' names and
runs the job: the excluded row survives and the other is deleted (it was
the other way round).

A failed or canceled job is unfinished too: pgjobs.retry queues it again
with what it stored, so its names are rewritten as a queued job's are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pytest

from pgjobs.migrate import migrate
from tests.support import run_job, scalar

PREVIOUS = Path(__file__).parent / "upgrade" / "previous_sql"


def upgrade_swap_and_run(conn: psycopg.Connection[Any], dsn: str, job_id: int,
                         retry: bool = False) -> None:
    """Upgrade to this checkout, swap tables ka's and kb's names, run the job
    (retried first when it ended before the upgrade)."""
    migrate(dsn)
    conn.execute("ALTER TABLE ka RENAME TO ka_old; ALTER TABLE kb RENAME TO ka;"
                 " ALTER TABLE ka_old RENAME TO kb")
    if retry:
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    run_job(conn, job_id)


@pytest.mark.parametrize("ended", [None, "canceled", "failed"])
@pytest.mark.parametrize("how", ["exclude", "filter"])
def test_a_pre_65_job_s_reg_names_survive_a_rename_after_the_upgrade(
        empty_dsn: str, how: str, ended: str | None) -> None:
    assert migrate(empty_dsn, PREVIOUS)["migrations_applied"]
    conn: psycopg.Connection[Any] = psycopg.connect(empty_dsn, autocommit=True)
    try:
        conn.execute("""
            CREATE TABLE ka (); CREATE TABLE kb ();
            CREATE TABLE rk (k regclass NOT NULL, s int NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
            CREATE INDEX ON rk (s, k);
            SELECT pgjobs.register_target('rk', 'k', 's', 'created_at');
            INSERT INTO rk (k, s) VALUES ('ka', 1), ('kb', 1);""")
        ka, kb = (scalar(conn, f"SELECT '{t}'::regclass::oid") for t in ("ka", "kb"))
        # Scope 1 but ka's row, or kb's row only: ka's row is kept either way.
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('rk', '1', %s, %s)",
                        ('{}', ["public.ka"]) if how == "exclude"
                        else ('{"k": "public.kb"}', []))
        # The stored form of the release before stop 65: names, not oids
        # (the quoted literal only: an oid's digits may stand elsewhere).
        old, new = ((f"'{{{ka}}}'", "'{public.ka}'") if how == "exclude"
                    else (f"'{kb}'::", "'public.kb'::"))
        conn.execute("""UPDATE pgjobs.jobs
                           SET predicate = replace(predicate, %(old)s, %(new)s),
                               survivors = CASE WHEN %(how)s = 'exclude'
                                                THEN jsonb_set(survivors, '{exclude}',
                                                               '["public.ka"]')
                                                ELSE survivors END
                         WHERE id = %(id)s""",
                     {"old": old, "new": new, "id": job_id, "how": how})
        assert new in scalar(conn, "SELECT predicate FROM pgjobs.jobs WHERE id = %s", (job_id,))
        # A job that ended before the upgrade (canceled, or failed) is
        # retried after it, with what it stored.
        if ended == "canceled":
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        elif ended == "failed":
            conn.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now(),"
                         " error = 'a page failed' WHERE id = %s", (job_id,))
        upgrade_swap_and_run(conn, empty_dsn, job_id, retry=bool(ended))
        assert [r[0] for r in conn.execute("SELECT k::oid FROM rk")] == [ka]
    finally:
        conn.close()


def test_a_queued_backfill_s_reg_set_value_survives_a_rename_after_the_upgrade(
        empty_dsn: str) -> None:
    """The previous release stored a backfill's set value of a regclass
    column (a domain over it, a regclass[]) by name in jobs.assignments, and
    each page read it again: a rename after the upgrade set another table.
    Migration 0196 rewrites those names to oids."""
    assert migrate(empty_dsn, PREVIOUS)["migrations_applied"]
    conn: psycopg.Connection[Any] = psycopg.connect(empty_dsn, autocommit=True)
    try:
        conn.execute("""
            CREATE TABLE ka (); CREATE TABLE kb (); CREATE DOMAIN reg_dom AS regclass;
            CREATE TABLE rv (id int NOT NULL, s int NOT NULL, v regclass, d reg_dom,
                             a regclass[],
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
            CREATE INDEX ON rv (s, id);
            SELECT pgjobs.register_target('rv', 'id', 's', 'created_at');
            INSERT INTO rv (id, s) VALUES (1, 1);""")
        ka, kb = (scalar(conn, f"SELECT '{t}'::regclass::oid") for t in ("ka", "kb"))
        job_id = scalar(conn, """SELECT pgjobs.submit_backfill('rv', '1', '{}',
                                     '{"v": "public.ka", "d": "public.ka",
                                       "a": ["public.ka", "public.kb"]}')""")
        assert "public.ka" in scalar(conn, "SELECT assignments FROM pgjobs.jobs WHERE id = %s",
                                     (job_id,))
        upgrade_swap_and_run(conn, empty_dsn, job_id)
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                      (job_id,)) == "succeeded"
        assert conn.execute("SELECT v::oid, d::oid, a::oid[] FROM rv").fetchone() == (
            ka, ka, [ka, kb])
    finally:
        conn.close()


def test_a_pre_65_delete_s_domain_key_names_survive_a_rename_after_the_upgrade(
        empty_dsn: str) -> None:
    """0195 rewrote the names of keys of the pg_catalog oid-alias types only:
    a delete queued before stop 65 on a key of a domain over regclass kept
    its exclude list's names (survivors.exclude, the predicate's
    '{public.ka}'::public.reg_dom[]). Migration 0196 rewrites them."""
    assert migrate(empty_dsn, PREVIOUS)["migrations_applied"]
    conn: psycopg.Connection[Any] = psycopg.connect(empty_dsn, autocommit=True)
    try:
        conn.execute("""
            CREATE TABLE ka (); CREATE TABLE kb (); CREATE DOMAIN reg_dom AS regclass;
            CREATE TABLE rk (k reg_dom NOT NULL, s int NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
            CREATE INDEX ON rk (s, k);
            SELECT pgjobs.register_target('rk', 'k', 's', 'created_at');
            INSERT INTO rk (k, s) VALUES ('ka', 1), ('kb', 1);""")
        ka = scalar(conn, "SELECT 'ka'::regclass::oid")
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('rk', '1', '{}', %s)",
                        (["public.ka"],))
        # The stored form of the release before stop 65: names, not oids.
        old = f"'{{{ka}}}'"
        assert old in scalar(conn, "SELECT predicate FROM pgjobs.jobs WHERE id = %s", (job_id,))
        conn.execute("""UPDATE pgjobs.jobs
                           SET predicate = replace(predicate, %s, '''{public.ka}'''),
                               survivors = jsonb_set(survivors, '{exclude}', '["public.ka"]')
                         WHERE id = %s""", (old, job_id))
        upgrade_swap_and_run(conn, empty_dsn, job_id)
        assert [r[0] for r in conn.execute("SELECT k::oid FROM rk")] == [ka]
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["kb", "o'b", 'q"b', "e\\b"])
@pytest.mark.parametrize("text", ["public.kb'::pg_catalog.regclass", "it's",
                                  "a\\b'::pg_catalog.regclass",
                                  '{"x": "\'public.kb\'::pg_catalog.regclass"}', "$$x$$"])
def test_the_rewrite_is_not_fooled_by_literals_that_look_like_reg_casts(
        empty_dsn: str, name: str, text: str) -> None:
    """A pre-65 delete filtered on a regclass value (a table name with a quote,
    a double quote or a backslash) and on a text column whose value looks like a
    reg* cast, holds doubled quotes, a backslash (an E'' literal before the
    reg* one) or dollar quotes: after the upgrade and a rename swap, it deletes
    exactly the row it selected, never another."""
    assert migrate(empty_dsn, PREVIOUS)["migrations_applied"]
    conn: psycopg.Connection[Any] = psycopg.connect(empty_dsn, autocommit=True)
    try:
        conn.execute(psycopg.sql.SQL("""
            CREATE TABLE ka (); CREATE TABLE {} ();
            CREATE TABLE rk (k regclass NOT NULL, s int NOT NULL, t text NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
            CREATE INDEX ON rk (s, k);
            SELECT pgjobs.register_target('rk', 'k', 's', 'created_at');""").format(
            psycopg.sql.Identifier(name)))
        kb_name = scalar(conn, "SELECT 'public.' || quote_ident(%s)", (name,))
        ka, kb = (scalar(conn, "SELECT %s::regclass::oid", (t,)) for t in ("ka", kb_name))
        conn.execute("INSERT INTO rk (k, s, t) VALUES (%s, 1, %s), (%s, 1, %s), (%s, 1, 'other')",
                     (ka, text, kb, text, kb))
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('rk', '1', %s::jsonb, '{}')",
                        (json.dumps({"k": kb_name, "t": text}),))
        # The release before stop 65 stored the name: write it back so.
        conn.execute("""UPDATE pgjobs.jobs
                           SET predicate = replace(
                                   predicate,
                                   quote_literal(%(oid)s::text) || '::pg_catalog.regclass',
                                   quote_literal(%(name)s) || '::pg_catalog.regclass')
                         WHERE id = %(id)s""", {"oid": kb, "name": kb_name, "id": job_id})
        assert scalar(conn, "SELECT strpos(predicate, quote_literal(%s::text)) > 0"
                            " FROM pgjobs.jobs WHERE id = %s", (kb_name, job_id))
        migrate(empty_dsn)
        conn.execute(psycopg.sql.SQL(
            "ALTER TABLE ka RENAME TO ka_old; ALTER TABLE {b} RENAME TO ka;"
            " ALTER TABLE ka_old RENAME TO {b}").format(b=psycopg.sql.Identifier(name)))
        run_job(conn, job_id)
        left = sorted((int(r[0]), r[1]) for r in conn.execute("SELECT k::oid, t FROM rk"))
        assert left == sorted([(ka, text), (kb, "other")])
    finally:
        conn.close()
