"""docs/operations.md "Advisory locks pgjobs takes" lists every advisory lock
pgjobs' code takes, and each with the key the code uses: an operator reading
pg_locks (or an application choosing its own keys) finds them in one place.
The demo's lock was a one-key hashtext('pgjobs.demo'), written only in
docs/embedded.md, which any bigint key of an application's could be."""

from __future__ import annotations

import re
from pathlib import Path

from pgjobs import queries

ROOT = Path(__file__).resolve().parent.parent
TAKES = re.compile(r"pg_(?:try_)?advisory_(?:xact_)?lock(?:_shared)?\s*\(|"
                   r"pgjobs\._advisory_xact_lock\s*\(")


def documented() -> dict[str, str]:
    """The table's rows: key -> form ("one key" or "two keys")."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Advisory locks pgjobs takes\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        table[cells[2].strip("`").replace("\\|", "|")] = cells[1]
    return table


def code() -> dict[str, str]:
    """Each file of code that takes an advisory lock: name -> its text without
    comments."""
    found = {}
    for path in sorted([*(ROOT / "sql" / "functions").glob("*.sql"),
                        *(ROOT / "sql" / "migrations").glob("*.sql"),
                        *(ROOT / "pgjobs").glob("*.py"), *(ROOT / "poller").glob("*.py"),
                        *(ROOT / "cli").glob("*.py"), *(ROOT / "ui").glob("*.py")]):
        comment = "--" if path.suffix == ".sql" else "#"
        text = "\n".join(line.split(comment, 1)[0] for line in path.read_text().splitlines())
        if TAKES.search(text.replace("FUNCTION pgjobs._advisory_xact_lock(", "")):
            found[path.name] = text
    return found


def test_every_advisory_lock_the_code_takes_is_in_the_table() -> None:
    table = documented()
    assert table == {
        "hashtext('pgjobs.migrate')": "one key",
        "hashtext('pgjobs.schedule')": "one key",
        "hashtext('pgjobs.register:' || table's oid)": "one key",
        f"({queries.ADVISORY_CLASS}, {queries.DEMO_LOCK_KEY})": "two keys",
    }, table
    files = code()
    # _advisory_xact_lock takes the key its callers pass; queries.py holds
    # MIGRATE_LOCK and DEMO_LOCK; the others call _advisory_xact_lock.
    assert sorted(files) == ["_advisory_xact_lock.sql", "queries.py", "register_target.sql",
                             "schedule.sql", "unregister_target.sql"], sorted(files)
    keys = {key for text in files.values()
            for key in re.findall(r"hashtext\('(pgjobs\.[^']*)'", text)}
    assert keys == {"pgjobs.migrate", "pgjobs.schedule", "pgjobs.register:"}, keys
    assert "hashtext('pgjobs.migrate')" in queries.MIGRATE_LOCK
    assert queries.DEMO_LOCK == ("SELECT pg_catalog.pg_try_advisory_lock(1885825634, 1) "
                                 "AS locked")
    assert int.from_bytes(b"pgjb", "big") == queries.ADVISORY_CLASS
