"""What the docs and the error hints tell a user to call exists, as written.

A reader copies the SQL of docs/*.md and the README, and the calls and
commands an error's message or HINT names: every `pgjobs.<fn>(` there must
be a function of the installed schema taking that many arguments (and those
argument names), every `pgjobs <command> --option` a command and option of
the CLI. Checked over every document and every literal of sql/functions, so
a renamed function or option cannot leave a stale example behind.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from psycopg import errors

from pgjobs.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FUNCTION_FILES = sorted((ROOT / "sql" / "functions").glob("*.sql"))
CALL = re.compile(r"\bpgjobs\.([a-z_][a-z0-9_]*)\s*\(")

Conn = psycopg.Connection[Any]


def _functions(conn: Conn) -> dict[str, list[tuple[int, int, set[str]]]]:
    """name -> (required, total, input argument names) of each overload."""
    found: dict[str, list[tuple[int, int, set[str]]]] = {}
    rows = conn.execute("""
        SELECT proname, pronargs, pronargdefaults, coalesce(proargnames, '{}'),
               coalesce(proargmodes::text[], '{}')
          FROM pg_proc WHERE pronamespace = 'pgjobs'::regnamespace""").fetchall()
    for name, nargs, ndefaults, names, modes in rows:
        inputs = {n for i, n in enumerate(names)
                  if n and (not modes or modes[i] in ("i", "b", "v"))}
        found.setdefault(name, []).append((nargs - ndefaults, nargs, inputs))
    return found


def _strip_sql_comments(text: str) -> str:
    """`--` comments and /* */ blocks out, string literals and $$ bodies kept."""
    out: list[str] = []
    i = 0
    quote = False
    while i < len(text):
        if quote:
            if text.startswith("''", i):
                out.append("''")
                i += 2
                continue
            if text[i] == "'":
                quote = False
            out.append(text[i])
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            if text[i] == "'":
                quote = True
            out.append(text[i])
            i += 1
    return "".join(out)


def _arguments(text: str, open_at: int) -> list[str] | None:
    """The top-level arguments of the call whose '(' is at open_at (None: unclosed)."""
    depth = 0
    args: list[str] = []
    current = ""
    quote: str | None = None
    i = open_at
    while i < len(text):
        ch = text[i]
        if quote:
            current += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            current += ch
        elif text.startswith("$$", i):
            end = text.index("$$", i + 2)
            current += text[i:end + 2]
            i = end + 1
        elif ch in "([":
            depth += 1
            if depth > 1:
                current += ch
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                if current.strip():
                    args.append(current.strip())
                return args
            current += ch
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    return None


def _sql_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"```sql\n(.*?)```", text, re.S):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((path.name, line, _strip_sql_comments(match.group(1))))
    return blocks


def test_the_docs_have_sql_examples_to_check() -> None:
    blocks = _sql_blocks()
    calls = {m.group(1) for _, _, block in blocks for m in CALL.finditer(block)}
    assert len(blocks) >= 20 and {"submit_delete", "claim", "allow_storage"} <= calls


def test_every_sql_example_calls_a_function_that_exists_with_those_arguments(
        conn: Conn) -> None:
    functions = _functions(conn)
    relations = {r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'pgjobs'::regnamespace")}
    problems = []
    for doc, line, block in _sql_blocks():
        for match in CALL.finditer(block):
            name = match.group(1)
            where = f"{doc}:{line}: pgjobs.{name}("
            if name not in functions:
                if name not in relations:  # INSERT INTO pgjobs.t (cols) is no call
                    problems.append(f"{where} no such function")
                continue
            args = _arguments(block, match.end() - 1)
            if args is None or (args and re.match(r"p_\w+\s+\w", args[0])):
                continue  # a signature as API.md writes it, not a call
            named = [a.split("=>")[0].strip() for a in args if "=>" in a]
            if not any(low <= len(args) <= high and set(named) <= names
                       for low, high, names in functions[name]):
                problems.append(f"{where} {len(args)} arguments {named or ''} fit no "
                                f"overload {[(lo, hi) for lo, hi, _ in functions[name]]}")
    assert not problems, "\n".join(problems)


def test_every_function_the_prose_names_exists(conn: Conn) -> None:
    """Inline code in the docs' prose, e.g. `pgjobs.retryable_sqlstate(sqlstate)`."""
    functions = _functions(conn)
    problems = [f"{path.name}: pgjobs.{m.group(1)}("
                for path in DOCS
                for code in re.findall(r"`([^`\n]+)`", path.read_text())
                for m in CALL.finditer(code) if m.group(1) not in functions]
    assert not problems, "\n".join(problems)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()
              ) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        found[prefix + (name,)] = command
        if isinstance(command, click.Group):
            found.update(_commands(command, prefix + (name,)))
    return found


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def _literals() -> list[tuple[str, str]]:
    """Every string literal of sql/functions outside comments and COMMENT ON
    (those feed docs/sql.md, checked above): messages, HINTs and DETAILs."""
    found = []
    for path in FUNCTION_FILES:
        text = re.sub(r"(?ms)^COMMENT ON .*?;\s*$", "", path.read_text())
        for literal in re.findall(r"'((?:[^']|'')*)'", _strip_sql_comments(text)):
            found.append((path.name, literal.replace("''", "'")))
    return found


def test_every_function_a_message_or_hint_names_exists(conn: Conn) -> None:
    functions = _functions(conn)
    literals = _literals()
    named = [(f, m.group(1)) for f, lit in literals for m in CALL.finditer(lit)]
    assert len(named) >= 10, "the scan found the hints' calls"
    problems = [f"{f}: pgjobs.{name}(" for f, name in named if name not in functions]
    assert not problems, "\n".join(problems)


@functools.cache
def _command_tree() -> tuple[dict[tuple[str, ...], click.Command], set[str]]:
    """Every command by its words, and the global options, walked once."""
    return _commands(cli_main), _options(cli_main)


COMMAND_NAMED = re.compile(r"(`?)pgjobs ([a-z][a-z-]*)((?: [a-z][a-z-]*)?)([^`'\n#]*)")


def _command_problems(f: str, literal: str) -> tuple[int, list[str]]:
    """The one scan of a message's `pgjobs <command> --options`, for the SQL's
    strings and the Python's alike: (how many commands it names, what it names
    that does not exist). Quoted, or followed by options, it is something to
    type: the command must exist, and so must its options (its own, or the
    global ones)."""
    commands, global_options = _command_tree()
    seen, problems = 0, []
    for m in COMMAND_NAMED.finditer(literal):
        quoted, word, sub, rest = m.group(1), m.group(2), m.group(3).strip(), m.group(4)
        options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest)
        if (word,) not in commands:
            if quoted or options:
                problems.append(f"{f}: no command `pgjobs {word}` ({literal[:80]})")
            continue
        seen += 1
        command = commands.get((word, sub), commands[(word,)])
        problems += [f"{f}: `pgjobs {word}` has no option {o}"
                     for o in options if o not in _options(command) | global_options]
    return seen, problems


def test_every_command_and_option_a_message_or_hint_names_exists() -> None:
    """`pgjobs <command>` in backquotes, or followed by options, is something
    to type: the command must exist, and so must its options."""
    seen = 0
    problems: list[str] = []
    for f, literal in _literals():
        found, wrong = _command_problems(f, literal)
        seen += found
        problems += wrong
    assert seen >= 5, "the scan found the hints' commands"
    assert not problems, "\n".join(problems)


def _python_literals() -> list[tuple[str, str]]:
    """Every string of the package's Python (an f-string with its fields as
    {}): the command line's, the worker's and the dashboard's messages and
    hints, and the SQL they send."""
    import ast

    found = []
    for folder in ("pgjobs", "cli", "poller", "ui"):
        for path in sorted((ROOT / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    found.append((path.name, "".join(
                        str(v.value) if isinstance(v, ast.Constant) else "{}"
                        for v in node.values)))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.append((path.name, node.value))
    return found


def test_every_command_option_and_function_python_names_exists(conn: Conn) -> None:
    """As the two tests above, over the Python side's strings: a hint of the
    command line, the worker or the dashboard ("see `pgjobs dev down
    --help`", "choose a free --metrics-port", "pgjobs.retry(id)") names a
    command, option and function that exist."""
    functions = _functions(conn)
    problems: list[str] = []
    seen = 0
    for f, literal in _python_literals():
        problems += [f"{f}: pgjobs.{m.group(1)}(" for m in CALL.finditer(literal)
                     if m.group(1) not in functions]
        found, wrong = _command_problems(f, literal)
        seen += found
        problems += wrong
    assert seen >= 20, "the scan found the Python hints' commands"
    assert not problems, "\n".join(problems)


# The worker example of docs/clients.md, run as the doc says: a role in
# pgjobs_admin, psql variables filled in as \gset would.

def _section(doc: str, heading: str) -> str:
    text = (ROOT / "docs" / doc).read_text()
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


@pytest.fixture
def role(conn: Conn) -> Any:
    name = f"pgjobs_test_doc_worker_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {name}")
    yield name
    conn.execute("RESET ROLE")
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
        conn.execute(f"DROP OWNED BY {name}")
    conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_clients_worker_example_runs_as_written(conn: Conn, role: str) -> None:
    section = _section("clients.md", "## Your own worker, any language")
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in _strip_sql_comments(block).split(";") if s.strip()]
    create = statements.pop(0)
    assert create.startswith("CREATE ROLE thumbnailer") and "pgjobs_admin" in create
    conn.execute(create.replace("thumbnailer", role))
    conn.execute("""
        CREATE TABLE thumbs (id bigint PRIMARY KEY, scope int NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON thumbs (scope, id);
        SELECT pgjobs.register_target('thumbs', 'id', 'scope', 'created_at');
    """)
    for _ in range(5):
        conn.execute("SELECT pgjobs.submit('thumbnail', 'thumbs', '1')")
    conn.execute(f"SET ROLE {role}")
    rows = conn.execute(statements.pop(0)).fetchall()  # the claim, limit 10
    assert len(rows) == 5
    claimed = [(job, worker) for job, worker, _ in rows]
    # one job per call that ends it: complete, fail, release; a batch for complete_many
    jobs = {"heartbeat": claimed[0], "release": claimed[0], "complete": claimed[1],
            "fail": claimed[2]}
    batch = claimed[3:]

    def fill(statement: str, job: int, worker: str) -> str:
        ids = ",".join(str(j) for j, _ in batch)
        workers = ",".join(f'"{w}"' for _, w in batch)
        values = {":'ids'": f"'{{{ids}}}'", ":'workers'": f"'{{{workers}}}'",
                  ":'worker'": f"'{worker}'", ":id": str(job), ":done": "5"}
        for variable, value in values.items():
            statement = statement.replace(variable, value)
        assert ":" not in re.sub(r"'[^']*'", "", statement), statement
        return statement

    answers = {}
    for statement in statements:
        name = CALL.search(statement).group(1)  # type: ignore[union-attr]
        job, worker = jobs.get(name, (0, ""))
        answers[name] = conn.execute(fill(statement, job, worker)).fetchall()
    assert answers["heartbeat"] == answers["complete"] == answers["fail"] == [(True,)]
    assert answers["release"] == [(True,)]
    assert sorted(answers["complete_many"]) == [(j,) for j, _ in batch]
    assert answers["retryable_sqlstate"] == [(True,)]


def test_a_client_role_cannot_run_the_worker_example(conn: Conn) -> None:
    """What the doc warns of: pgjobs_client alone gets 42501."""
    name = f"pgjobs_test_doc_client_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {name}")
    conn.execute(f"CREATE ROLE {name} IN ROLE pgjobs_client")
    try:
        conn.execute(f"SET ROLE {name}")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pgjobs.claim(ARRAY['thumbnail'], 'host-1:4242')")
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP ROLE {name}")


# The storage allow-list hints: the call they name allows the very URI refused.

@pytest.mark.parametrize(("kind", "uri"), [
    ("export", "file:///srv/exports/tenant/"),
    ("export", "gs://reports/monthly"),
    ("import", "s3://uploads/imports/t42.csv.gz"),
    ("import", "https://example.com/data/t.csv"),
    ("import", "file:///t.csv"),
    ("import", "file:///srv/imports/tenant/t42.csv"),
    ("import", "s3://uploads/t42.csv"),
])
def test_the_allow_storage_call_a_hint_names_allows_that_uri(
        conn: Conn, kind: str, uri: str) -> None:
    conn.execute("""
        CREATE TABLE rows (id bigint PRIMARY KEY, scope int NOT NULL, data jsonb,
                           created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON rows (scope, id);
        SELECT pgjobs.register_target('rows', 'id', 'scope', 'created_at', 'data');
    """)
    submit = ("SELECT pgjobs.submit_export('rows', '42', '{}', "
              "jsonb_build_object('destination', %s::text))"
              if kind == "export" else "SELECT pgjobs.submit_import('rows', '42', %s)")
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        conn.execute(submit, [uri])
    hint = refused.value.diag.message_hint or ""
    call = re.search(r"pgjobs\.allow_storage\('[^']*'\)", hint)
    assert call, hint
    conn.execute(f"SELECT {call.group(0)}")
    if kind == "import" and uri.count("/") > 3:  # the source's folder, not the one file
        assert call.group(0) == f"pgjobs.allow_storage('{uri.rsplit('/', 1)[0]}')"
    assert conn.execute(submit, [uri]).fetchone()[0] > 0  # type: ignore[index]


def test_every_command_line_in_the_docs_names_a_command_and_its_options() -> None:
    """`pgjobs <command> --option` in the docs' code (blocks and inline)."""
    commands = _commands(cli_main)
    global_options = _options(cli_main)
    seen = 0
    problems = []
    for path in DOCS:
        text = path.read_text()
        pieces = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
        for line in (line for piece in pieces for line in piece.splitlines()):
            line = re.split(r"\s#\s|//", line)[0]
            m = re.match(r"\s*(?:\$ )?pgjobs((?: --?[a-z][\w-]*(?:[ =](?!-)\S+)?)*) "
                         r"([a-z][a-z-]*)((?: [a-z][a-z-]*)?)(.*)", line)
            if not m:
                continue
            before, word, sub, rest = m.groups()
            if (word,) not in commands:
                problems.append(f"{path.name}: no command `pgjobs {word}`: {line.strip()}")
                continue
            seen += 1
            command = commands.get((word, sub.strip()), commands[(word,)])
            problems += [f"{path.name}: `pgjobs {word}` has no option {o}: {line.strip()}"
                         for o in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", before + rest)
                         if o not in _options(command) | global_options]
    assert seen >= 50, "the scan found the docs' command lines"
    assert not problems, "\n".join(problems)


def test_every_doctor_check_is_in_the_operations_table() -> None:
    """docs/operations.md's doctor table lists every check_name doctor can
    report, and nothing doctor never reports."""
    sources = "".join(p.read_text() for p in FUNCTION_FILES
                      if p.name.startswith(("_doctor", "doctor")))
    checks = set(re.findall(r"check_name :?= '([a-z_]+\.[a-z_]+)'", sources))
    section = (ROOT / "docs" / "operations.md").read_text().split("## pgjobs doctor", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", section.split("\n## ", 1)[0], re.M))
    assert len(checks) >= 20
    assert checks == documented, (checks - documented, documented - checks)


def test_a_table_owned_by_a_member_registers_as_operations_md_says(conn: Conn) -> None:
    """operations.md, "Which role should own and run pgjobs": the targets'
    owners may be members of the role pgjobs runs as. Registering such a
    table as that role cannot set its autovacuum parameters: the refusal
    names the option and the way out, and the way out works."""
    runner, owner = (f"pgjobs_test_doc_{name}_{os.getpid()}" for name in ("runner", "app"))
    for role in (owner, runner):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {runner} IN ROLE pgjobs_admin")
    conn.execute(f"CREATE ROLE {owner} IN ROLE {runner}")
    try:
        conn.execute(f"""
            CREATE TABLE owned (id bigint PRIMARY KEY, scope int NOT NULL,
                                created_at timestamptz NOT NULL DEFAULT now());
            CREATE INDEX ON owned (scope, id);
            ALTER TABLE owned OWNER TO {owner};
            SET ROLE {runner};
        """)
        with pytest.raises(errors.InsufficientPrivilege) as refused:
            conn.execute("SELECT pgjobs.register_target('owned', 'id', 'scope', 'created_at')")
        assert "tune_autovacuum" in str(refused.value)
        hint = refused.value.diag.message_hint or ""
        assert '{"tune_autovacuum": false}' in hint and "ALTER TABLE public.owned SET" in hint
        conn.execute("SELECT pgjobs.register_target('owned', 'id', 'scope', 'created_at', "
                     "p_options => '{\"tune_autovacuum\": false}')")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT count(*) FROM pgjobs.targets "
                            "WHERE target = 'owned'::regclass").fetchone() == (1,)
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP TABLE IF EXISTS owned")
        for role in (owner, runner):
            conn.execute(f"DROP ROLE IF EXISTS {role}")
