"""The one place where database errors become pgjobs' Python exceptions.

SQL functions raise standard SQLSTATEs with a HINT; psycopg maps each
SQLSTATE to an exception class. This module turns them into
:class:`PgjobsError` subclasses that carry a one-line message for users.
"""

from __future__ import annotations

import functools
import re
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    import psycopg
else:
    from pgjobs.lazy import lazy_module

    # Read only to sort an error psycopg raised (so psycopg is imported by then):
    # importing this module must not import it (`pgjobs --help`, pgjobs/lazy.py).
    psycopg = lazy_module("psycopg")


# Characters that steer a terminal or a reader rather than show: C0 and C1
# controls (ESC opens colour, cursor, title and clipboard sequences; a
# newline or tab forges a line or a column), the Unicode line and paragraph
# separators, and the bidirectional overrides and isolates (text that reads
# in another order than it is).
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """A value from the database as text a person's terminal only shows: each
    character of _UNSHOWN written as its escape (``\\x1b``, ``\\n``,
    ``\\u202e``). What a client stores (a scope, a payload echoed in an
    error) reaches an operator's ``pgjobs list``, ``status`` or ``items``, and
    an error line quotes inputs: raw, an escape sequence there could rewrite
    the lines around it, set the window's title or the clipboard. Every
    error line the command line prints passes here (PgjobsError.__str__),
    and pgjobs.cli.output prints the database's text through it.
    JSON output needs none of this: JSON escapes every control character."""
    return _UNSHOWN.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"),
                        str(value))



class PgjobsError(Exception):
    """Base class: a failure a user can act on. ``str()`` is one line."""

    exit_code = 1
    default_sqlstate: str | None = None
    """The SQLSTATE an error of this class raised in Python (not by the database)
    carries: every error a user sees names one, as the database's do."""

    def __init__(self, message: str, *, sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate if sqlstate is not None else self.default_sqlstate
        self.hint = hint
        self.guessed_hint = False
        """The hint is :func:`_privilege_hint`'s, for a 42501 PostgreSQL raised
        without one (:func:`has_generic_privilege_hint`)."""

    def __str__(self) -> str:
        text = self.message
        if self.sqlstate:
            text = f"{text} [{self.sqlstate}]"
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        # One line of text only, whatever the input the message quotes (a
        # scope or a filter key may hold line breaks, or ESC).
        return printable(text)


class InvalidInput(PgjobsError):
    """Bad arguments: malformed filter, unknown option, wrong type (22023)."""

    exit_code = 2
    default_sqlstate: str | None = "22023"


class InvalidDsn(InvalidInput):
    """The DSN itself cannot be parsed (``missing "="``, an unknown URI parameter):
    a usage error, exit 2, raised before any connection is tried; 22023 as every
    bad argument (it carried no SQLSTATE, alone among the CLI's errors)."""


class UndefinedTable(InvalidInput):
    """The table named does not exist (42P01)."""

    default_sqlstate: str | None = "42P01"


class NotFound(PgjobsError):
    """The job or registration does not exist (P0002)."""

    default_sqlstate: str | None = "P0002"


class Conflict(PgjobsError):
    """The (target, scope) already has a writing job (55006)."""

    default_sqlstate: str | None = "55006"


class NotReady(PgjobsError):
    """A prerequisite is missing: index, pg_cron... (55000)."""

    default_sqlstate: str | None = "55000"


class PermissionDenied(PgjobsError):
    """The caller lacks a privilege (42501)."""

    default_sqlstate: str | None = "42501"


class MissingExtra(PgjobsError):
    """An optional dependency is not installed (an extra, :func:`install_hint`): no
    retry on this machine can succeed, the message names the extra to install. 0A000
    (feature_not_supported, by this installation), which no policy retries."""

    default_sqlstate: str | None = "0A000"


DISTRIBUTION = "pgjobs-engine"
"""The distribution's name (pyproject.toml); the command and the package are `pgjobs`."""


def install_hint(extra: str) -> str:
    """How to install the optional extra ``extra`` (pyproject.toml's
    [project.optional-dependencies]): the one spelling of every error hint and
    line of the code that says so (tests/test_install_hints.py finds any
    other, in the code and in the docs). Both ways pgjobs is installed: from
    its clone (docs/quickstart.md), where ``pip install -e '.[X]'`` is the
    docs' line, and as the installed distribution, whose environment takes
    ``pip install 'pgjobs-engine[X]'`` (pip reads the extra from the installed
    metadata; outside that environment the name would be looked up on the
    package index, where pgjobs is not). The packages the extra brings are
    named too, as the installed metadata lists them (none when pgjobs runs
    uninstalled from a source tree)."""
    brings = ", ".join(extra_packages(extra))
    return (f"install the '{extra}' extra: pip install -e '.[{extra}]' in the pgjobs clone, "
            f"or pip install '{DISTRIBUTION}[{extra}]' in the environment {DISTRIBUTION} is "
            f"installed in" + (f" (it brings {brings})" if brings else ""))


def extra_packages(extra: str) -> list[str]:
    """The requirements extra ``extra`` adds (``starlette>=0.37``), from the
    installed distribution's metadata; [] when it is not installed."""
    from importlib import metadata

    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    marker = re.compile(r"""\bextra\s*==\s*["']""" + re.escape(extra) + """["']""")
    return [req.split(";")[0].replace(" ", "") for req in requires
            if ";" in req and marker.search(req.split(";", 1)[1])]


class ConnectionFailed(PgjobsError):
    """The database cannot be reached (08001, sqlclient_unable_to_establish_sqlconnection,
    as libpq's clients name it: psycopg gives no SQLSTATE for a failed connection)."""

    default_sqlstate: str | None = "08001"


class ConnectionLost(ConnectionFailed):
    """An established session ended under a command (server restart or crash,
    failover, an administrator's pg_terminate_backend, the network): not a wrong
    DSN. Its jobs keep their place; the hint says to run the command again. 08006
    (connection_failure) when the server sent no SQLSTATE of its own."""

    default_sqlstate: str | None = "08006"


class NotInstalled(PgjobsError):
    """The database has no pgjobs schema, or an older one (a missing schema, table
    or function of pgjobs: 3F000, 42P01, 42883): the same runtime error, exit 1,
    whichever object the command happened to reach first (a database that does
    not exist exits 1 too), never the usage error of a misspelt table. The
    database's SQLSTATE, else 3F000 (no schema pgjobs)."""

    default_sqlstate: str | None = "3F000"


class NoDatabase(ConnectionFailed):
    """No DSN is configured and the embedded cluster is not running: a usage error
    (exit 2), since only ``pgjobs dev up`` / ``pgjobs demo`` start that cluster."""

    exit_code = 2


UNKNOWN_JOB_HINT = ("`pgjobs list` shows the jobs this role may see; a finished job is "
                    "deleted once older than the retention (`pgjobs prune`, 24 hours by "
                    "default)")


def unknown_job(job_id: int | str) -> NotFound:
    """The one error of every surface given a job id that names no job (or one this
    role may not see): the same line and hint from each command of the command
    line (pgjobs.cli.common) and each page and API route of the dashboard
    (pgjobs.ui.app), whether it looked the job up itself or a SQL verb said P0002."""
    return NotFound(f"job {job_id} does not exist", sqlstate="P0002", hint=UNKNOWN_JOB_HINT)


NUL_HINT = ("remove the NUL character (\\x00, %00 in a URL) from the value: PostgreSQL "
            "text cannot hold one")


_BY_SQLSTATE: dict[str, type[PgjobsError]] = {
    "22023": InvalidInput,
    "22021": InvalidInput,  # a character text cannot hold (a NUL, refused by psycopg)
    "22P02": InvalidInput,
    "22P05": InvalidInput,  # a NUL (\u0000) in JSON text: jsonb cannot store it
    "42P01": UndefinedTable,
    # A TARGET in a schema that does not exist (pgjobs' own is NotInstalled,
    # sorted first): the same misspelt table name as 42P01, its own SQLSTATE.
    "3F000": UndefinedTable,
    "P0002": NotFound,
    "55006": Conflict,
    "55000": NotReady,
    "42501": PermissionDenied,
}


_DEFAULT_HINTS: dict[str, str] = {
    # PostgreSQL gives none when a name does not resolve to a table (regclass).
    "42P01": "check the table's name and schema (e.g. public.items) in this database; "
             "SELECT * FROM pgjobs.targets lists the registered ones",
    "3F000": "check the table's name and schema (e.g. public.items) in this database; "
             "SELECT * FROM pgjobs.targets lists the registered ones",
}
"""The hint of an error PostgreSQL raises without one: every error a user sees
says what to do next."""


def from_connect(exc: psycopg.Error) -> PgjobsError:
    """Translate what ``psycopg.connect`` raised: a DSN it cannot parse is a usage
    error (psycopg raises ProgrammingError for it, before any network call), the
    rest as :func:`from_psycopg` (unreachable, refused, no such database or role)."""
    if isinstance(exc, psycopg.ProgrammingError) and exc.sqlstate is None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable"
        return InvalidDsn(f"invalid DSN: {first}")
    if isinstance(exc, psycopg.OperationalError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        return ConnectionFailed(first, sqlstate=exc.sqlstate)
    return from_psycopg(exc)


LOST_HINT = ("the server ended this session (restart, failover, pg_terminate_backend or "
             "the network); jobs keep their place: run the command again once the server "
             "answers (a job this session ran resumes after its lease expires; "
             "`pgjobs doctor` shows it)")
"""What to do when a session is lost under a command."""

# libpq's wording of a connection attempt that failed (never a session that
# ended): a reader or writer connection opened outside :func:`from_connect`
# keeps the connection hint (check the DSN).
_CONNECT_FAILURES = ("connection failed", "connection to server at", "connection to server on",
                     "could not translate host name", "invalid connection option")

# SQLSTATEs of a session ended by the server: admin_shutdown, crash_shutdown
# and the connection exceptions (08xxx).
_LOST_STATES = ("57P01", "57P02", "08")


def from_psycopg(exc: psycopg.Error) -> PgjobsError:
    """Translate a psycopg error into the matching :class:`PgjobsError`."""
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        if first.startswith(_CONNECT_FAILURES):
            return ConnectionFailed(first)
        return ConnectionLost(first, hint=LOST_HINT)
    if isinstance(exc, psycopg.DataError) and exc.sqlstate is None:
        # A value psycopg would not send (text holding a NUL, which
        # PostgreSQL's text cannot store): the caller's value, never the
        # server's state (without a SQLSTATE the dashboard read it as 503).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid value"
        nul = "NUL" in first
        return InvalidInput(first, sqlstate="22021" if nul else "22023",
                            hint=NUL_HINT if nul else "correct the value and run the command again")
    if (exc.sqlstate or "").startswith(_LOST_STATES) and exc.sqlstate != "08P01":
        first = exc.diag.message_primary or str(exc).strip().splitlines()[0]
        return ConnectionLost(first, sqlstate=exc.sqlstate, hint=LOST_HINT)
    diag = exc.diag
    message = diag.message_primary or str(exc).strip().splitlines()[0]
    missing = _missing_pgjobs_hint(exc.sqlstate or "", message)
    if missing is not None:
        return NotInstalled(message, sqlstate=exc.sqlstate, hint=missing)
    cls = _BY_SQLSTATE.get(exc.sqlstate or "", PgjobsError)
    hint = diag.message_hint or _DEFAULT_HINTS.get(exc.sqlstate or "")
    guessed = hint is None and exc.sqlstate == "42501"
    if guessed:
        hint = privilege_hint("42501", message)
    error = cls(message, sqlstate=exc.sqlstate, hint=hint)
    error.guessed_hint = guessed
    return error


_ROLES_DOC = 'docs/operations.md, "Roles"'


def privilege_hint(sqlstate: str, message: str, *, outside: bool | None = None,
                    admin_only: bool | None = None) -> str | None:
    """The hint of a privilege PostgreSQL itself refused (42501 without a hint),
    chosen by the object refused (:func:`refused_name`, the name the message
    ends with), never by other words or names of the message:

    - ``pgjobs`` (its schema): the role a command connects as is in neither of
      pgjobs' roles;
    - one of pgjobs' routines (``permission denied for function claim``): it
      is an administrator's (pgjobs_admin), called by a client;
    - anything else (the user's own table, a schema or database of theirs, a
      tenant's ``pgjobs-acme``): the grant on that object, named.

    ``outside`` and ``admin_only``, when known (:func:`pgjobs.db.translated`
    asks the server on the session that was refused), say whether the role
    indeed lacks USAGE on schema pgjobs and EXECUTE on the routine of that
    name: a table of the user's named ``pgjobs`` or ``stats`` is then no
    longer read as pgjobs' schema or routine. pgjobs' own refusals carry their
    hint."""
    if sqlstate != "42501":
        return None
    name = refused_name(message)
    if name == "pgjobs" and outside is not False:
        return ("the role this command connects as is in neither pgjobs_client nor "
                "pgjobs_admin: an administrator runs GRANT pgjobs_client TO <role>; (submit, "
                "follow and control jobs) or GRANT pgjobs_admin TO <role>; (also run the "
                f"engine and workers), see {_ROLES_DOC}")
    if name in _pgjobs_routines() and admin_only is not False:
        return (f"{name} is for administrators (pgjobs_admin), which the role this "
                "command connects as is not: connect as a member of pgjobs_admin, or have "
                f"one run it (GRANT pgjobs_admin TO <role>;), see {_ROLES_DOC}")
    if name:
        return (f"the role this command connects as lacks a privilege on {_quoted(name)} "
                "(the object refused, not one of pgjobs'): its owner or a superuser grants "
                f"it (GRANT ... ON ... {_quoted(name)} TO <role>;), or connect as a role that "
                f"has it (see {_ROLES_DOC})")
    return ("the role this command connects as lacks that privilege: an administrator grants "
            f"it, or connect as a role that has it (see {_ROLES_DOC})")


_privilege_hint = privilege_hint  # the name it had (tests, older callers)

_QUOTES = "\"'»«„“”‘’「」()."


# The kinds of object PostgreSQL's "permission denied for <kind> <name>" names
# (aclchk.c), longest first: the rest of the message is the name, spaces and
# all (PostgreSQL prints it unquoted: ``permission denied for table my table``).
_OBJECT_KINDS = sorted((
    "aggregate", "collation", "conversion", "database", "domain", "event trigger",
    "extension", "foreign-data wrapper", "foreign server", "foreign table", "function",
    "index", "language", "large object", "materialized view", "operator", "operator class",
    "operator family", "parameter", "policy", "procedure", "publication", "relation",
    "routine", "schema", "sequence", "statistics object", "subscription", "table",
    "tablespace", "text search configuration", "text search dictionary", "type", "view",
), key=len, reverse=True)
_KIND_WORDS = "|".join(map(re.escape, _OBJECT_KINDS))
_ENGLISH_REFUSAL = re.compile(rf"permission denied for (?:{_KIND_WORDS}) (?P<name>.+)", re.DOTALL)
# A name the message quotes ("x", « x », „x“, 「x」): the last such span
# (``permission denied for column "c" of relation "t"``: the table).
_QUOTED_SPAN = re.compile(r'"(?P<a>[^"]+)"|«\s*(?P<b>[^»]+?)\s*»|„(?P<c>[^“”]+)[“”]'
                          r"|「(?P<d>[^」]+)」")


def refused_name(message: str) -> str | None:
    """The name of the object a 42501 of PostgreSQL's refused, in every
    language: the rest of an English ``permission denied for <kind> <name>``
    whole (``permission denied for schema pgjobs acme`` names ``pgjobs
    acme``, a quoted identifier with a space; ``pgjobs-acme`` names
    ``pgjobs-acme``, never ``pgjobs``); else the last name the message quotes
    (``droit refusé pour le schéma « pgjobs acme »``, ``... for table
    "pgjobs"``); else the whole last word, unquoted (``keine Berechtigung für
    Schema pgjobs``: ``pgjobs``; an unquoted name with a space in a language
    other than English reads as its last word). None when there is none."""
    text = message.strip()
    english = _ENGLISH_REFUSAL.fullmatch(text)
    if english:
        name = english.group("name").strip().rstrip(".").strip()
        if name:
            return name
    quoted = [next(g for g in m.groups() if g is not None)
              for m in _QUOTED_SPAN.finditer(text)]
    if quoted and quoted[-1].strip():
        return quoted[-1].strip()
    names = [w.strip(_QUOTES) for w in text.split()]
    names = [n for n in names if n]  # a closing » of its own is no name
    return names[-1] if names else None


def _quoted(name: str) -> str:
    """``name`` as an identifier an administrator can paste into a GRANT."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def has_generic_privilege_hint(exc: PgjobsError) -> bool:
    """A 42501 that PostgreSQL raised without a hint of its own, so it carries
    :func:`_privilege_hint`'s: a command that knows better what its role lacks
    (``pgjobs migrate``: CREATE on the database, roles) words its own."""
    return exc.sqlstate == "42501" and (
        exc.guessed_hint or exc.hint == privilege_hint("42501", exc.message))


_NOT_INSTALLED = ("pgjobs is not installed in this database, or is older than this "
                  "pgjobs: run `pgjobs migrate` here, or point --dsn (PGJOBS_DSN) at "
                  "the database where it is installed")


def _missing_pgjobs_hint(sqlstate: str, message: str) -> str | None:
    """A missing pgjobs schema, table or function (3F000, 42P01, 42883) means
    the database has no pgjobs, or an older one, rather than a typo of the
    user's: PostgreSQL's own hint (none, or "add explicit type casts") does not
    say what to do. Told by the name the message carries (the schema pgjobs,
    or a name qualified by it), whatever language the server writes in."""
    if sqlstate == "3F000":
        return _NOT_INSTALLED if "pgjobs" in _identifiers(message) else None
    if sqlstate in ("42883", "42P01"):
        return _NOT_INSTALLED if _PGJOBS_QUALIFIED.search(message) else None
    return None


_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_$.])[A-Za-z_][A-Za-z0-9_$]*(?![A-Za-z0-9_$])")
_PGJOBS_QUALIFIED = re.compile(r"(?<![A-Za-z0-9_$.])pgjobs\.[A-Za-z_]")


def _identifiers(message: str) -> list[str]:
    """The unqualified ASCII names in a server's message, in order: a schema or
    routine it names keeps its spelling in every translation, its words do not.
    (A name qualified by another, ``pgjobs.claim``, is not one.)"""
    return [m.group(0) for m in _IDENTIFIER.finditer(message)
            if not message.startswith(".", m.end())]


@functools.cache
def _pgjobs_routines() -> frozenset[str]:
    """The names of pgjobs' functions and procedures: one file each in the
    shipped sql/functions (the grants file aside)."""
    folder = Path(str(resources.files("pgjobs.sql"))) / "functions"
    return frozenset(p.stem for p in folder.glob("*.sql") if not p.stem.startswith("zz_"))


# --- the error a job records ---------------------------------------------------------

_TAG = re.compile(r" ?\[(?P<state>[0-9A-Z]{5})\]")
_NAMED = re.compile(r"SQLSTATE [0-9A-Z]{5}")


def _hint_end(text: str, at: int) -> int:
    """Where the ``(hint: ...)`` that starts at ``at`` (after a tag) ends: its
    end is found by its parentheses (a hint may hold some: ``pgjobs.retry(5)``),
    the text's end when they never close; ``at`` when no hint starts there."""
    if not text.startswith(" (hint: ", at):
        return at
    depth, i = 0, at + 1
    while i < len(text):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return i
    return len(text)


def _without_tags(text: str) -> str:
    """``text`` with every ``[XXXXX]`` SQLSTATE tag, and the ``(hint: ...)`` that
    follows one, taken out: what is left of other errors' one-line forms
    (:meth:`PgjobsError.__str__`) quoted inside it."""
    out: list[str] = []
    at = 0
    for tag in _TAG.finditer(text):
        if tag.start() < at:
            continue
        out.append(text[at:tag.start()])
        at = _hint_end(text, tag.end())
    out.append(text[at:])
    return "".join(out)


def split_tail(text: str) -> tuple[str, str, str | None] | None:
    """``(message, sqlstate, hint)`` of an error's one line (``message [XXXXX]
    (hint: ...)``, :meth:`PgjobsError.__str__`) recorded as text (a part's
    error, read back by its job's worker); None when ``text`` does not end so.
    Only a tag the text ends with, or whose hint's parentheses close at its
    end, is the tail: a tag quoted mid-message (``... [58030] (hint: a) (3
    times in one attempt)``) is not, whatever follows it."""
    for tag in reversed(list(_TAG.finditer(text))):
        end = _hint_end(text, tag.end())
        if end == len(text):
            hint = text[tag.end() + len(" (hint: "):end - 1] if end > tag.end() else None
            return text[:tag.start()], tag["state"], hint
    return None


def words(exc: BaseException) -> str:
    """What an error says, on one line, without a SQLSTATE or a hint: the text
    another error's message quotes of it (``cannot write x: {words(exc)}``),
    so that the wrapping error names one SQLSTATE, its own, carried apart
    (``sqlstate=``, ``hint=``), never a second one mid-message."""
    if isinstance(exc, PgjobsError):
        text = exc.message
    else:
        diag = getattr(exc, "diag", None)
        text = (getattr(diag, "message_primary", None) if diag is not None else None) or str(exc)
    text = _without_tags(text.strip().splitlines()[0] if text.strip() else "")
    return text.strip() or type(exc).__name__


def job_error(exc: BaseException) -> str:
    """The one line a worker records as a job's (or a part's) error for ``exc``:
    its words, then its own SQLSTATE and hint (``... [58030] (hint: ...)``),
    naming at most one SQLSTATE whatever the message quoted: other errors'
    tags inside it are taken out (:func:`words`), and a message whose text
    names one already (``... (SQLSTATE 53200)``, the database's wording) gets
    no second. The one place every poller's ``_fail`` builds it
    (tests/test_job_errors.py holds them to it)."""
    if _raised_by_psycopg(exc) and not isinstance(exc, PgjobsError):
        exc = from_psycopg(exc)
    text = words(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    hint = getattr(exc, "hint", None) if isinstance(exc, PgjobsError) else None
    if sqlstate and not _NAMED.search(text):
        text = f"{text} [{sqlstate}]"
    if hint:
        text = f"{text} (hint: {' '.join(_without_tags(str(hint)).split())})"
    # Stored as said (the command line shows it through printable).
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _raised_by_psycopg(exc: BaseException) -> TypeGuard[psycopg.Error]:
    """Whether ``exc`` is a psycopg error, without importing psycopg: a process
    that has not imported it cannot have one."""
    return "psycopg" in sys.modules and isinstance(exc, sys.modules["psycopg"].Error)


def sqlstates(text: str) -> list[str]:
    """Every SQLSTATE a recorded error names: ``[XXXXX]`` tags and ``SQLSTATE
    XXXXX`` words (for the policy test: at most one)."""
    return [m["state"] for m in _TAG.finditer(text)] + [m[0][-5:] for m in _NAMED.finditer(text)]
