"""The SQL reference (docs/sql.md), generated from the database itself:
every public routine of schema pgjobs with its signature and its
COMMENT ON FUNCTION. ``python -m pgjobs.reference --dsn DSN > docs/sql.md``
(or ``PGJOBS_DSN`` set) regenerates it; a test fails when the file is out of date."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pgjobs import db, queries

HEADER = """# SQL reference

Generated from `COMMENT ON FUNCTION` by `python -m pgjobs.reference` — do not
edit by hand. Every routine lives in schema `pgjobs`; routines whose names
start with `_` are private and not listed. Errors use standard SQLSTATEs:
`22023` bad argument, `42P01` unknown table, `42501` missing privilege,
`55000` prerequisite missing, `55006` gate conflict, `P0002` unknown job.

**Why scopes (and excluded keys) are `text`.** One set of functions serves
every registered table, and each table's scope and key columns have their
own types (integer, uuid, `char(8)`, a domain...). SQL has no parameter
type that adapts per table, so values travel as text and each entry point
casts them to the column's full type, read from the catalog at each call,
and stores the canonical spelling: for an integer scope `'01'` and `'1'` are
one tenant, and a value the column cannot hold is refused (`22023`). Pass
the value as text (`'42'`, or `42::text` from a typed variable);
docs/engine.md, "Types, spellings and settings", has the rules. Job
statuses and NOTIFY events are listed in docs/events.md.
"""


def render(conn: Any) -> str:
    parts = [HEADER]
    for row in db.rows(conn, queries.REFERENCE_ROUTINES):
        parts.append(f"\n## `pgjobs.{row['name']}`\n\n```sql\n{row['signature']}\n```\n\n"
                     f"{row['comment'] or ''}\n\n- security: {row['security']}; "
                     f"executable by pgjobs_client: {'yes' if row['client'] else 'no'}\n")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("PGJOBS_DSN")
    parser.add_argument("--dsn", default=default, required=default is None,
                        help="the migrated database (default: PGJOBS_DSN)")
    args = parser.parse_args()
    with db.connect(args.dsn) as conn:
        print(render(conn), end="")


if __name__ == "__main__":
    main()
