"""One-off, for merging branches written against the old helper modules:
rewrite their imports to tests.support. Delete once every branch is merged.

    python -m tests.support.rewrite_imports tests/test_new_thing.py ...
    ruff check --fix --select I,F401 tests   # then sort and merge the imports

Maps tests.helpers / targets / export_support / import_support / conftest to
tests.support; tests.ui_support, pgcluster, standby, s3_faults and
filter_reference to tests.support.<module>; drops imported storage fixtures
(conftest registers them) and their `# noqa: F811`s; renames job_row to job,
renaming a local variable `job` to `row` in functions that had one.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FIXTURES = {"bucket", "local_dir", "s3_endpoint", "s3_env", "big", "az_container", "az_env",
            "azurite_endpoint", "gcs_bucket", "gcs_endpoint", "gcs_env"}
TO_PACKAGE = {"tests.helpers", "tests.targets", "tests.export_support", "tests.import_support",
              "tests.cloud_emulators", "tests.conftest"}
TO_MODULE = {"tests.ui_support": "tests.support.ui", "tests.pgcluster": "tests.support.pgcluster",
             "tests.standby": "tests.support.standby", "tests.s3_faults": "tests.support.s3_faults",
             "tests.filter_reference": "tests.support.filter_reference"}


def rewrite_imports(source: str) -> str:
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ImportFrom) and node.module
                and (node.module in TO_PACKAGE or node.module in TO_MODULE)):
            continue
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)  # type: ignore[union-attr]
        names = sorted({("job" if a.name == "job_row" else a.name)
                        + (f" as {a.asname}" if a.asname else "")
                        for a in node.names
                        if node.module in TO_MODULE or a.name not in FIXTURES})
        module = TO_MODULE.get(node.module, "tests.support")
        edits.append((node.lineno, node.end_lineno or node.lineno,
                      f"{indent}from {module} import {', '.join(names)}\n" if names else ""))
    for start, end, new in sorted(edits, reverse=True):
        lines[start - 1:end] = [new]
    out = "".join(lines)
    out = re.sub(r"^# ruff: noqa: F811\n", "", out, flags=re.M)
    out = re.sub(r"\n# Fixtures come from tests\.export_support[^\n]*\n(#[^\n]*\n)*\n", "\n", out)
    out = re.sub(r"  # noqa: F811\b[^\n]*", "", out)
    return re.sub(r"\bjob_row\(", "job(", out)


def rename_local_job(source: str) -> str:
    """When the module imports job from tests.support, a local `job` in a
    function becomes `row` (or `found`): it would shadow the reader."""
    lines = source.splitlines(keepends=True)
    edits = set()
    tree = ast.parse(source)
    if not any(isinstance(n, ast.ImportFrom) and n.module == "tests.support"
               and any(a.name == "job" and a.asname is None for a in n.names)
               for n in ast.walk(tree)):
        return source
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        names = [n for n in ast.walk(fn) if isinstance(n, ast.Name)]
        if not any(n.id == "job" and isinstance(n.ctx, ast.Store) for n in names):
            continue
        used = {n.id for n in names}
        new = next(c for c in ("row", "found", "job_row_") if c not in used)
        calls = {id(c.func) for c in ast.walk(fn) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name) and c.func.id == "job"}
        edits |= {(n.lineno, n.col_offset, n.end_col_offset, new) for n in names
                  if n.id == "job" and id(n) not in calls}
    for line, start, end, new in sorted(edits, reverse=True):
        text = lines[line - 1]
        lines[line - 1] = text[:start] + new + text[end:]
    return "".join(lines)


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        before = path.read_text()
        after = rename_local_job(rewrite_imports(before))
        if after != before:
            path.write_text(after)
            print(f"rewrote {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
