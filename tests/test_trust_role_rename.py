"""A job's submitter is the role that submitted it, by oid, whatever it is
called now (pgjobs._is_submitter, policy jobs_client_read of migration 0163).

Renamed after it submitted (ALTER ROLE a RENAME TO b), a client kept
nothing of its own: the policy asked for its old name AND its oid, so it no
longer saw its jobs on a target it may not read, nor their items; its
cancel, pause, resume, retry and add_items found no job (P0002); and its
jobs, acting with the rights of a role of the old name, failed at their
next start ("role ... does not exist (any more)"). A role created under a
dropped submitter's name, on the other hand, must get none of the old
role's jobs, items, room or tenancy keys. Every entry a client may call on
its own job is asked both ways, as that client; an administrator is
unchanged. A job made before migration 0033 got its submitter's oid from
migration 0180, by name, where a role had it; one whose submitter was gone
then has none and is no role's (it was judged by name, so a role created
under that name later got it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.export import Exporter
from pgjobs.poller.importer import Importer
from tests.support import (
    allowed_folder,
    claim_import,
    drop_client,
    job,
    make_people,
    make_rows_target,
    make_target,
    people_client,
    run_job,
    scalar,
    seed,
    submit_delete,
    submit_import,
)
from tests.support.roles import acting_as, drop_role, make_role, row_as, scalar_as

Conn = psycopg.Connection[Any]

UPDATE_ITEMS = "GRANT UPDATE ON items TO {role}"
CLIENT = "GRANT pgjobs_client TO {role}"
ALL_ROWS = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"

# Every entry a client may call on a job of its own, and what it takes.
CONTROLS = {
    "add_items": "SELECT pgjobs.add_items(%s, '[3]'::jsonb)",
    "pause": "SELECT pgjobs.pause(%s)",
    "resume": "SELECT pgjobs.resume(%s)",
    "cancel": "SELECT pgjobs.cancel(%s)",
    "retry": "SELECT pgjobs.retry(%s)",
}


class Roles:
    """The submitter (UPDATE on items: it may submit there, not read it, so
    only the submitter rule shows it its jobs), its jobs, and the names."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.name = make_role(conn, "rnsub", CLIENT, UPDATE_ITEMS)
        self.oid = int(scalar(conn, "SELECT %s::regrole::oid", (self.name,)))
        self.items_job = int(scalar_as(conn, self.name, "SELECT pgjobs.submit_items("
                                       "'doc', 'items', '1', '[1, 2]'::jsonb)"))
        self.custom_job = int(scalar_as(conn, self.name,
                                        "SELECT pgjobs.submit('custom', 'items', '1')"))
        self.made = [self.name]

    def rename(self) -> str:
        new = self.name + "_b"
        self.conn.execute(f"ALTER ROLE {self.name} RENAME TO {new}")
        self.made = [new]
        return new

    def replace(self, *grants: str) -> None:
        """Drop the submitter; create a role under its name with ``grants``."""
        drop_role(self.conn, self.name)
        self.conn.execute(f"CREATE ROLE {self.name} NOLOGIN")
        for grant in grants:
            self.conn.execute(grant.format(role=self.name))
        assert scalar(self.conn, "SELECT %s::regrole::oid", (self.name,)) != self.oid


@pytest.fixture
def roles(conn: Conn) -> Iterator[Roles]:
    make_target(conn)
    made = Roles(conn)
    yield made
    conn.execute("RESET ROLE")
    for role in made.made:
        drop_role(conn, role)


def seen(conn: Conn, role: str, job_id: int) -> tuple[int, int]:
    """(jobs, items) of ``job_id`` that ``role`` reads in pgjobs.jobs and pgjobs.job_items."""
    row = row_as(conn, role, "SELECT (SELECT count(*) FROM pgjobs.jobs WHERE id = %(id)s), "
                             "(SELECT count(*) FROM pgjobs.job_items WHERE job_id = %(id)s)",
                 {"id": job_id})
    assert row is not None
    return int(row[0]), int(row[1])


def status(conn: Conn, job_id: int) -> str:
    return str(scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)))


def test_a_renamed_submitter_still_sees_its_jobs_and_their_items(conn: Conn,
                                                                  roles: Roles) -> None:
    assert seen(conn, roles.name, roles.items_job) == (1, 2)
    new = roles.rename()
    assert seen(conn, new, roles.items_job) == (1, 2)
    assert seen(conn, new, roles.custom_job) == (1, 0)
    # The name stays the one it submitted under: for display only.
    assert scalar(conn, "SELECT submitted_by FROM pgjobs.jobs WHERE id = %s",
                  (roles.items_job,)) == roles.name


@pytest.mark.parametrize("entry", list(CONTROLS))
def test_a_renamed_submitter_keeps_every_right_on_its_job(conn: Conn, roles: Roles,
                                                         entry: str) -> None:
    new = roles.rename()
    job_id = roles.items_job if entry == "add_items" else roles.custom_job
    if entry == "resume":
        row_as(conn, new, CONTROLS["pause"], (job_id,))
        assert status(conn, job_id) == "paused"
    if entry == "retry":
        row_as(conn, new, CONTROLS["cancel"], (job_id,))
        assert status(conn, job_id) == "canceled"
    row_as(conn, new, CONTROLS[entry], (job_id,))
    after = {"add_items": "queued", "pause": "paused", "resume": "queued",
             "cancel": "canceled", "retry": "queued"}[entry]
    assert status(conn, job_id) == after
    if entry == "add_items":
        assert seen(conn, new, job_id) == (1, 3)


def test_a_renamed_submitter_keeps_its_room(conn: Conn, roles: Roles) -> None:
    room = "SELECT kept_bytes, jobs_keeping_bytes FROM pgjobs.client_room()"
    before = row_as(conn, roles.name, room)
    assert before is not None and before[0] > 0
    new = roles.rename()
    assert row_as(conn, new, room) == before


@contextmanager
def delete_then_rename(conn: Conn, label: str) -> Iterator[tuple[str, int]]:
    """A client (``label``) submits a delete of ``n = 1`` on a seeded
    user_table_rows scope 1 and is renamed afterwards: the block gets its
    new name and the job; the role is dropped when the block ends."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    role = make_role(conn, label, CLIENT, ALL_ROWS)
    new = role + "_b"
    try:
        with acting_as(conn, role):
            job_id = submit_delete(conn, target, "1", {"n": 1})
        conn.execute(f"ALTER ROLE {role} RENAME TO {new}")
        yield new, job_id
    finally:
        drop_role(conn, new)


def test_a_renamed_submitters_job_runs_with_its_rights(conn: Conn) -> None:
    """The job acts with the rights of the role that submitted it: renamed
    since, that role still (pgjobs._submitter_problem asks by oid)."""
    with delete_then_rename(conn, "rnrun") as (_, job_id):
        run_job(conn, job_id)
        assert status(conn, job_id) == "succeeded", scalar(
            conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,))
        assert scalar(conn, "SELECT count(*) FROM user_table_rows "
                            "WHERE table_id = 1 AND n = 1") == 0


KINDS = ["delete", "backfill", "export", "import", "import_update"]


def submit_kind(conn: Conn, kind: str, src: Path) -> int:
    """A job of ``kind`` on ``people`` scope 1, submitted on ``conn`` as it is."""
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1')"))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', "
                                "'{\"name\": \"changed\"}'::jsonb)"))
    if kind == "export":
        return int(scalar(conn, "SELECT pgjobs.submit_export('people', '1')"))
    path = src / f"{kind}.csv"
    path.write_bytes(b"id,name\n1,changed\n100,new\n" if kind == "import_update"
                     else b"name,age\nnew,1\n")
    return submit_import(conn, f"file://{path}", "1",
                         {"on_duplicate": "update"} if kind == "import_update" else {})


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_a_renamed_submitter_runs_with_its_rights(
        conn: Conn, dsn: str, tmp_path: Path, kind: str) -> None:
    """The claim (pgjobs._submitter_problem) and each import batch
    (pgjobs._import_insert_sql) ask for the submitter by oid, under the name
    it goes by now (pgjobs._submitter_name)."""
    src = allowed_folder(conn, tmp_path)
    role = people_client(conn, "rnkind")
    new = role + "_b"
    conn.execute("INSERT INTO people (tenant, name, age) "
                 "SELECT 1, 'p' || i, i FROM generate_series(1, 5) i")
    try:
        conn.execute(f"SET ROLE {role}")
        job_id = submit_kind(conn, kind, src)
        conn.execute("RESET ROLE")
        conn.execute(f"ALTER ROLE {role} RENAME TO {new}")
        if kind in ("delete", "backfill"):
            run_job(conn, job_id)
        else:
            claim = "claim_export" if kind == "export" else "claim_import"
            claimed = conn.execute(f"SELECT worker FROM pgjobs.{claim}(%s, 'test')",
                                   (job_id,)).fetchall()
            assert len(claimed) == 1, job(conn, job_id)["error"]
            runner = Exporter if kind == "export" else Importer
            runner(dsn, job_id, claimed[0][0], f"file://{src}/store").run()
        row = job(conn, job_id)
        assert row["status"] == "succeeded", row["error"]
        assert row["submitted_by"] == role  # the name at submit, for display
    finally:
        drop_client(conn, new)


def test_a_renamed_submitters_lost_right_is_told_under_its_name_now(conn: Conn) -> None:
    """Renamed, then a right revoked: the job fails at its start as any
    submitter's would, and the message and hint name the role as it is
    called now, the one to grant the right back to."""
    with delete_then_rename(conn, "rnlost") as (new, job_id):
        conn.execute(f"REVOKE DELETE ON user_table_rows FROM {new}")
        run_job(conn, job_id)
        row = job(conn, job_id)
        assert row["status"] == "failed"
        assert f"role {new} lacks DELETE" in row["error"], row["error"]
        assert f"rights of {new}, who submitted it" in row["error"], row["error"]


def test_a_role_under_a_dropped_submitters_name_runs_nothing_with_its_jobs(conn: Conn) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    role = make_role(conn, "rnrun", CLIENT, ALL_ROWS)
    try:
        conn.execute(f"SET ROLE {role}")
        job_id = submit_delete(conn, target, "1", {"n": 1})
        conn.execute("RESET ROLE")
        drop_role(conn, role)
        make_role(conn, "rnrun", CLIENT, ALL_ROWS)
        run_job(conn, job_id)
        assert status(conn, job_id) == "failed"
        error = str(scalar(conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,)))
        assert "is not the role that submitted the job" in error
        assert scalar(conn, "SELECT count(*) FROM user_table_rows "
                            "WHERE table_id = 1 AND n = 1") > 0
    finally:
        conn.execute("RESET ROLE")
        drop_role(conn, role)


def test_a_role_under_a_dropped_submitters_name_sees_none_of_its_jobs(conn: Conn,
                                                                      roles: Roles) -> None:
    roles.replace(CLIENT, UPDATE_ITEMS)
    assert seen(conn, roles.name, roles.items_job) == (0, 0)
    assert seen(conn, roles.name, roles.custom_job) == (0, 0)
    room = row_as(conn, roles.name,
                  "SELECT kept_bytes, jobs_keeping_bytes FROM pgjobs.client_room()")
    assert room is not None and (room[0] or 0, room[1] or 0) == (0, 0)


def ready_for(conn: Conn, roles: Roles, entry: str) -> tuple[int, str]:
    """The job ``entry`` of CONTROLS applies to, made ready by its submitter
    (paused for resume, canceled for retry), and its status then."""
    job_id = roles.items_job if entry == "add_items" else roles.custom_job
    if entry == "resume":
        row_as(conn, roles.name, CONTROLS["pause"], (job_id,))
    if entry == "retry":
        row_as(conn, roles.name, CONTROLS["cancel"], (job_id,))
    return job_id, status(conn, job_id)


@pytest.mark.parametrize("entry", list(CONTROLS))
def test_a_role_under_a_dropped_submitters_name_controls_none_of_its_jobs(
        conn: Conn, roles: Roles, entry: str) -> None:
    job_id, before = ready_for(conn, roles, entry)
    roles.replace(CLIENT, UPDATE_ITEMS)
    with pytest.raises(psycopg.errors.NoDataFound) as raised:
        row_as(conn, roles.name, CONTROLS[entry], (job_id,))
    assert raised.value.diag.message_primary == f"job {job_id} does not exist"
    assert raised.value.diag.message_hint == (
        "List jobs with SELECT * FROM pgjobs.jobs; finished jobs are pruned after the "
        "retention period.")
    assert status(conn, job_id) == before
    assert scalar(conn, "SELECT count(*) FROM pgjobs.job_items WHERE job_id = %s",
                  (roles.items_job,)) == 2


def test_a_role_under_a_dropped_submitters_name_adds_no_bytes_to_its_job(
        conn: Conn, roles: Roles) -> None:
    """Reading the target (so it may see and control the job by its rights),
    the newcomer still may not spend the gone submitter's room."""
    roles.replace(CLIENT, "GRANT SELECT, UPDATE ON items TO {role}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
        row_as(conn, roles.name, CONTROLS["add_items"], (roles.items_job,))
    assert raised.value.diag.message_primary == (
        f"job {roles.items_job} was submitted by another role: only its submitter or an "
        "administrator may add fan-out items to it (they count toward the submitter's "
        "max_item_bytes_per_client)")
    assert raised.value.diag.message_hint is not None
    assert raised.value.diag.message_hint.startswith("Submit them as a job of your own")


def test_tenancy_keys_follow_the_submitter_by_oid(conn: Conn) -> None:
    """pgjobs._allowed_scope_keys covers a registered target a client may not
    read only where it has jobs (pgjobs._has_jobs_on): its own, renamed; never
    a dropped submitter's, to a role that took the name."""
    make_rows_target(conn)
    role = make_role(conn, "rnkeys", CLIENT, "GRANT UPDATE ON user_table_rows TO {role}")
    new = role + "_b"
    keys = "SELECT pgjobs._allowed_scope_keys()"
    mine = "SELECT count(*) FROM pgjobs.jobs WHERE id = %s"
    try:
        job_id = int(scalar_as(conn, role, "SELECT pgjobs.submit('custom', "
                                           "'user_table_rows', '1')"))
        conn.execute("SET pgjobs.allowed_scopes = '01'")  # a key's canonical match only
        target_oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
        expected = [f"{target_oid}:1"]
        assert scalar_as(conn, role, keys) == expected
        conn.execute(f"ALTER ROLE {role} RENAME TO {new}")
        assert scalar_as(conn, new, keys) == expected
        assert scalar_as(conn, new, mine, (job_id,)) == 1
        conn.execute(f"ALTER ROLE {new} RENAME TO {role}")
        drop_role(conn, role)
        make_role(conn, "rnkeys", CLIENT, "GRANT UPDATE ON user_table_rows TO {role}")
        assert scalar_as(conn, role, keys) == []
        assert scalar_as(conn, role, mine, (job_id,)) == 0
    finally:
        conn.execute("RESET ROLE")
        conn.execute("RESET pgjobs.allowed_scopes")
        drop_role(conn, role)


def forget_oids(conn: Conn, *job_ids: int) -> None:
    """The jobs as migration 0180 leaves one made before migration 0033
    whose submitter no role had the name of at the upgrade: no oid."""
    conn.execute("UPDATE pgjobs.jobs SET submitted_by_oid = NULL WHERE id = ANY (%s)",
                 (list(job_ids),))


def test_a_job_without_an_oid_is_no_roles_to_see(conn: Conn, roles: Roles) -> None:
    """Jobs made before migration 0033 got their submitter's oid from 0180
    where a role had the name; one left without (that role was gone) is no
    role's own: the role that holds the name now, created after the
    upgrade, does not see it (it was judged by name before, and got it)."""
    forget_oids(conn, roles.items_job, roles.custom_job)
    assert seen(conn, roles.name, roles.items_job) == (0, 0)
    assert seen(conn, roles.name, roles.custom_job) == (0, 0)
    assert scalar(conn, "SELECT pgjobs._has_jobs_on(%s, 'items')", (roles.name,)) is False


@pytest.mark.parametrize("entry", list(CONTROLS))
def test_a_job_without_an_oid_is_no_roles_to_control(conn: Conn, roles: Roles,
                                                     entry: str) -> None:
    job_id, before = ready_for(conn, roles, entry)
    forget_oids(conn, job_id)
    with pytest.raises(psycopg.errors.NoDataFound):
        row_as(conn, roles.name, CONTROLS[entry], (job_id,))
    assert status(conn, job_id) == before
    assert scalar(conn, "SELECT count(*) FROM pgjobs.job_items WHERE job_id = %s",
                  (roles.items_job,)) == 2


def test_a_job_without_an_oid_runs_with_no_roles_rights(conn: Conn) -> None:
    """It acts with nobody's rights: it fails at its start as a job of a
    dropped submitter does, even where a role of its name exists now."""
    with delete_then_rename(conn, "rnnooid") as (new, job_id):
        conn.execute(f"ALTER ROLE {new} RENAME TO {new[:-2]}")  # its name at submit again
        try:
            forget_oids(conn, job_id)
            run_job(conn, job_id)
            row = job(conn, job_id)
            assert row["status"] == "failed"
            assert "is not the role that submitted the job" in row["error"], row["error"]
            assert scalar(conn, "SELECT count(*) FROM user_table_rows "
                                "WHERE table_id = 1 AND n = 1") > 0
        finally:
            conn.execute(f"ALTER ROLE {new[:-2]} RENAME TO {new}")


def test_an_administrator_is_unchanged(conn: Conn, roles: Roles) -> None:
    admin = make_role(conn, "rnadmin", "GRANT pgjobs_admin TO {role}", UPDATE_ITEMS)
    try:
        roles.rename()
        assert seen(conn, admin, roles.items_job) == (1, 2)
        row_as(conn, admin, CONTROLS["add_items"], (roles.items_job,))
        row_as(conn, admin, CONTROLS["cancel"], (roles.custom_job,))
        assert status(conn, roles.custom_job) == "canceled"
        assert seen(conn, admin, roles.items_job) == (1, 3)
    finally:
        drop_role(conn, admin)


def test_the_one_submitter_rule(conn: Conn) -> None:
    """pgjobs._is_submitter, the one rule: by oid when the job has one."""
    role = make_role(conn, "rnrule", CLIENT)
    oid = int(scalar(conn, "SELECT %s::regrole::oid", (role,)))
    try:
        rule = "SELECT pgjobs._is_submitter(%s, %s, %s)"
        assert scalar(conn, rule, (role, role, oid)) is True
        assert scalar(conn, rule, (role, "someone_else", oid)) is True  # renamed since
        assert scalar(conn, rule, (role, role, oid + 1)) is False  # not that role
        assert scalar(conn, rule, (role, role, None)) is False  # no oid: no role's
        assert scalar(conn, rule, (role, "someone_else", None)) is False
        assert scalar(conn, rule, ("no_such_role_rn", "no_such_role_rn", oid)) is False
    finally:
        drop_role(conn, role)


# The engine's messages that name a job's submitter (each of a job the
# client is not there to see fail): the role as it is called now, the one
# an administrator finds in pg_roles and grants to; the name at submit
# only when that role is gone.
def pause_expired(conn: Conn, dsn: str, role: str, tmp_path: Path) -> Iterator[int]:
    """A delete ``role`` submitted and paused, then the engine's sweep
    (pgjobs._expire_client_pauses) past max_client_pause; after the block."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    with acting_as(conn, role):
        job_id = submit_delete(conn, target, "1", {"n": 1})
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": "1 minute"}')""")
    conn.execute("UPDATE pgjobs.jobs SET paused_at = now() - interval '1 hour' WHERE id = %s",
                 (job_id,))
    yield job_id
    assert scalar(conn, "SELECT pgjobs._expire_client_pauses()") == 1
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": null}')""")


def import_past_the_clients_ceiling(conn: Conn, dsn: str, role: str,
                                    tmp_path: Path) -> Iterator[int]:
    """An import ``role`` submitted whose first reject passes the ceiling of
    the bytes a client keeps (max_item_bytes_per_client); run after the block."""
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON people TO {role}")
    src = allowed_folder(conn, tmp_path)
    (src / "bad.csv").write_bytes(b"name,age\nok,1\nbad,x\n")
    with acting_as(conn, role):
        job_id = submit_import(conn, f"file://{src}/bad.csv", "1", {"max_rejects": 10})
    conn.execute("""SELECT pgjobs.set_defaults('{"max_item_bytes_per_client": 1}')""")
    try:
        yield job_id
        Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    finally:
        conn.execute("""SELECT pgjobs.set_defaults('{"max_item_bytes_per_client": null}')""")


MESSAGES = {
    "pause expiry": (contextmanager(pause_expired), "paused by a client ({role})"),
    "import rejects": (contextmanager(import_past_the_clients_ceiling),
                       "would bring the bytes role {role} keeps"),
}


# A dropped submitter's import fails at its claim, before any batch: its
# message is the claim's ("role ... does not exist (any more)").
@pytest.mark.parametrize(("message", "then"), [("pause expiry", "renamed"),
                                               ("pause expiry", "dropped"),
                                               ("import rejects", "renamed")])
def test_a_message_names_the_submitter_as_it_is_called_now(
        conn: Conn, dsn: str, tmp_path: Path, message: str, then: str) -> None:
    make_people(conn)
    role = make_role(conn, "rnmsg", CLIENT)
    new = role + "_b"
    make, said = MESSAGES[message]
    try:
        with make(conn, dsn, role, tmp_path) as job_id:
            if then == "renamed":
                conn.execute(f"ALTER ROLE {role} RENAME TO {new}")
            else:
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")
        error = str(job(conn, job_id)["error"])
        assert said.format(role=new if then == "renamed" else role) in error, error
        assert job(conn, job_id)["status"] in ("canceled", "failed")
    finally:
        for name in (role, new):
            if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)):
                drop_role(conn, name)
