"""pgjobs.claim_items of a kind that is never a fan-out job is refused, not an
empty answer for as long as the worker polls: pgjobs runs its own kinds
(delete and backfill in the engine, export and import in `pgjobs worker`),
and pgjobs.submit_items refuses them, so no item of theirs ever exists. The
list of such kinds is the submit's (pgjobs._builtin_kind, pgjobs._writes),
read here from the database, so a new built-in kind is covered too.

pgjobs.claim of the same kinds stays a valid call: the engine claims delete
and backfill jobs with it (pgjobs._run_next) and the worker exports and
imports."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar

Conn = psycopg.Connection[Any]

BUILTIN = ["delete", "backfill", "export", "import"]


def test_the_list_is_the_databases(conn: Conn) -> None:
    refused = [k for k in [*BUILTIN, "resize", "thumbnail"]
               if scalar(conn, "SELECT pgjobs._builtin_kind(%s) OR pgjobs._writes(%s)", (k, k))]
    assert refused == BUILTIN


@pytest.mark.parametrize("kinds", [[k] for k in BUILTIN] + [["resize", "export"],
                                                            ["delete", "backfill"]],
                         ids=lambda kinds: ",".join(kinds))
def test_claim_items_of_a_kind_pgjobs_runs_is_refused(conn: Conn, kinds: list[str]) -> None:
    with pytest.raises(errors.InvalidParameterValue) as refused:
        conn.execute("SELECT * FROM pgjobs.claim_items(%s, 'w')", (kinds,))
    diag = refused.value.diag
    assert "never a fan-out job" in (diag.message_primary or "")
    for kind in kinds:
        if kind in BUILTIN:
            assert repr(kind) in (diag.message_primary or ""), diag.message_primary
    assert "thumbnail" in (diag.message_hint or "") and "pgjobs worker" in (diag.message_hint or "")


def test_claim_items_of_a_custom_kind_still_claims(conn: Conn) -> None:
    make_rows_target(conn)
    scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', '1', "
                 "'[{\"a\": 1}, {\"a\": 2}]')")
    assert conn.execute("SELECT count(*) FROM pgjobs.claim_items(ARRAY['resize'], 'w', "
                        "'30 seconds', 10)").fetchone() == (2,)
    # Not yet submitted: an empty answer, as any queue's.
    assert conn.execute("SELECT count(*) FROM pgjobs.claim_items(ARRAY['thumbnail'], "
                        "'w')").fetchone() == (0,)


@pytest.mark.parametrize("kind", BUILTIN)
def test_claim_of_the_same_kinds_stays_valid(conn: Conn, kind: str) -> None:
    assert conn.execute("SELECT count(*) FROM pgjobs.claim(%s, 'w')",
                        ([kind],)).fetchone() == (0,)
