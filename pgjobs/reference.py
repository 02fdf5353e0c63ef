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
