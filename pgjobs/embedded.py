"""The embedded local PostgreSQL cluster behind ``pgjobs dev up | down | status``.

One cluster per ``$PGJOBS_HOME`` (default: a per-user data directory), laid out as::

    home/data/          PGDATA (initdb -A trust -U postgres -E UTF8)
    home/run/           unix socket directory (or a short one under /tmp, see below)
    home/cluster.json   state kept across runs: the TCP port chosen at first init
    home/postgres.log   server log (pg_ctl -l)
    home/lock           flock()ed while up()/down() work, so two callers never both initdb

The server listens on 127.0.0.1 on a free port picked once and kept, with pg_cron
preloaded when the extension is installed. PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` system user and ``home`` belongs to it.
Every command here is a subprocess of the PostgreSQL binaries; the only SQL sent
(database and extension creation) goes through :mod:`pgjobs.db`.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pgjobs import db, queries
from pgjobs.errors import InvalidInput, PgjobsError

SERVER_USER_AS_ROOT = "postgres"
"""The system user the server runs as when pgjobs is run as root."""

DATABASE = "pgjobs"
"""The database created in the cluster; pg_cron's ``cron.database_name``."""

ROOT_DEFAULT_HOME = Path("/var/lib/pgjobs")

_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_CONF_FILE = "pgjobs.conf"
_INCLUDE_LINE = f"include_if_exists = '{_CONF_FILE}'"


class EmbeddedError(PgjobsError):
    """The embedded cluster cannot be set up, started or stopped: a prerequisite of
    this machine (55000), as every error a user sees names a SQLSTATE."""

    default_sqlstate: str | None = "55000"


@contextlib.contextmanager
def _home_errors() -> Iterator[None]:
    """What the filesystem refuses while up/down/status work (a --home under /proc,
    on a read-only disk, a file where the directory should be, no permission) as
    one EmbeddedError line with a hint; it was a traceback. An error about
    another path (a binary, the log) keeps its own words."""
    try:
        yield
    except OSError as exc:
        base = home()
        what = exc.strerror or str(exc)
        where = str(exc.filename) if exc.filename is not None else None
        if where is not None and (where == str(base) or where.startswith(f"{base}/")
                                  or str(base).startswith(f"{where}/")):
            raise EmbeddedError(
                f"cannot use {base} as the embedded cluster's home: {what} ({where})",
                hint="pass --home (or set PGJOBS_HOME) to a directory this user may create "
                     "and write, e.g. /tmp/pgjobs-dev") from None
        raise EmbeddedError(f"{what}" + (f": {where}" if where else ""),
                            hint="see docs/embedded.md") from None


# --- where things live ----------------------------------------------------------


def is_root() -> bool:
    return os.geteuid() == 0


def home() -> Path:
    """``$PGJOBS_HOME``, else ``/var/lib/pgjobs`` as root (``/root`` is mode 700, out of
    the postgres user's reach), else ``$XDG_DATA_HOME/pgjobs`` or
    ``~/.local/share/pgjobs``."""
    explicit = os.environ.get("PGJOBS_HOME")
    if explicit and not explicit.strip():
        # Blanks are no folder: they named a directory '  ' under the working one.
        raise InvalidInput("environment variable PGJOBS_HOME is blank (only whitespace), "
                           "which is neither a folder nor unset",
                           hint="give PGJOBS_HOME a folder, or unset it (`unset PGJOBS_HOME`)")
    if explicit:
        return Path(explicit).expanduser().absolute()
    if is_root():
        return ROOT_DEFAULT_HOME
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "pgjobs").absolute()


def data_dir(base: Path | None = None) -> Path:
    return (base or home()) / "data"


def _state_file(base: Path) -> Path:
    return base / "cluster.json"


def _log_file(base: Path) -> Path:
    return base / "postgres.log"


def dsn_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


# --- binaries -------------------------------------------------------------------


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([0-9.]+)/bin$", path)
    return tuple(int(p) for p in match.group(1).split(".") if p) if match else (0,)


def find_bindir() -> Path:
    """The directory of initdb/pg_ctl/postgres: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``, else ``$PATH``."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out and _has_server(Path(out)):
                return Path(out)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_server(Path(candidate)):
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found and _has_server(Path(found).parent):
        return Path(found).parent
    raise EmbeddedError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found",
        hint="install postgresql-15 (and postgresql-15-cron for pg_cron), "
        "or put its bin directory on PATH",
    )


def _major_version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return match.group(1) if match else ""


def _sharedirs(bindir: Path) -> list[Path]:
    dirs: list[Path] = []
    for pg_config in (str(bindir / "pg_config"), shutil.which("pg_config")):
        if pg_config and os.access(pg_config, os.X_OK):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run(
                    [pg_config, "--sharedir"],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=10,
                ).stdout.strip()
                if out:
                    dirs.append(Path(out))
                    break  # the pg_config next to the server wins over the one on PATH
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        major = _major_version(bindir)
        if major:
            dirs.append(Path("/usr/share/postgresql") / major)
    return dirs


def pg_cron_available(bindir: Path | None = None) -> bool:
    """Whether the pg_cron extension is installed for the server in ``bindir``."""
    bindir = bindir or find_bindir()
    return any((d / "extension" / "pg_cron.control").exists() for d in _sharedirs(bindir))


# --- running as the server user ---------------------------------------------------


def _server_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as, or None to run as ourselves."""
    if not is_root():
        return None
    try:
        return pwd.getpwnam(SERVER_USER_AS_ROOT)
    except KeyError:
        raise EmbeddedError(
            f"running as root needs the '{SERVER_USER_AS_ROOT}' system user "
            "(PostgreSQL refuses to run as root)",
            hint="install postgresql-15 (it creates that user), or run pgjobs as a normal user",
        ) from None


def as_server_user(argv: list[str]) -> list[str]:
    """``argv`` prefixed so it runs as the server user when we are root.

    ``setpriv`` execs in place (signals reach the program itself); ``runuser`` forks
    and is only the fallback."""
    user = _server_user()
    if user is None:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [
            setpriv,
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--init-groups",
            "--",
            *argv,
        ]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--", *argv]
    raise EmbeddedError(
        "running as root needs setpriv or runuser (util-linux) to start PostgreSQL "
        f"as '{user.pw_name}'",
        hint="install util-linux, or run pgjobs as a normal user",
    )


def _run(argv: list[str], cwd: Path, what: str, timeout: float = 120) -> str:
    try:
        proc = subprocess.run(
            as_server_user(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise EmbeddedError(
            f"{what} failed: {detail[-1] if detail else f'exit status {proc.returncode}'}",
            hint=f"see {cwd / 'postgres.log'}" if what.startswith("pg_ctl") else None,
        )
    return proc.stdout


def _first_unreachable(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` cannot traverse."""
    groups = {user.pw_gid} | set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return directory
    return None


def _prepare_home(base: Path) -> None:
    """Create ``base`` and, as root, hand it to the server user after checking it can
    reach it."""
    user = _server_user()
    if user is None:
        base.mkdir(parents=True, exist_ok=True)
        return
    blocked = _first_unreachable(base, user)
    if blocked is not None:
        mode = stat.filemode(blocked.stat().st_mode)
        raise EmbeddedError(
            f"PGJOBS_HOME {base} is not reachable by the '{user.pw_name}' user that runs "
            f"PostgreSQL as root: {blocked} is {mode}",
            hint=f"set PGJOBS_HOME to a directory it can reach (e.g. {ROOT_DEFAULT_HOME} or "
            f"under /tmp), or `chmod o+x {blocked}`",
        )
    base.mkdir(parents=True, exist_ok=True)
    # Top level only: initdb and the server create everything below as that user.
    for path in [base, *base.iterdir()]:
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_uid != user.pw_uid:
                os.lchown(path, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- state ----------------------------------------------------------------------


def _read_state(base: Path) -> dict[str, Any]:
    try:
        value = json.loads(_state_file(base).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_state(base: Path, state: dict[str, Any]) -> None:
    tmp = _state_file(base).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(_state_file(base))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As PostgreSQL binds: a port whose last server just stopped (its
        # connections in TIME_WAIT) is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _socket_dir(base: Path, port: int) -> Path:
    """``home/run``, or a short directory under /tmp when the socket path
    (``dir/.s.PGSQL.PORT``) would pass the 107-byte limit of unix sockets."""
    preferred = base / "run"
    if len(str(preferred / f".s.PGSQL.{port}").encode()) <= _SOCKET_PATH_MAX:
        return preferred
    import hashlib

    tag = hashlib.sha256(str(base).encode()).hexdigest()[:10]
    return Path("/tmp") / f"pgjobs-{os.getuid()}-{tag}"


def _postmaster(base: Path) -> tuple[int, int] | None:
    """(pid, port) of the running server, from ``postmaster.pid``; None when stopped."""
    try:
        lines = (data_dir(base) / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (FileNotFoundError, PermissionError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        comm = "postgres"
    return (pid, port) if comm.startswith(("postgres", "postmaster")) else None


# --- config -----------------------------------------------------------------------


def _config(port: int, socket_dir: Path, cron: bool) -> str:
    lines = [
        "# Written by pgjobs on every `pgjobs dev up`; edit postgresql.conf instead.",
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{socket_dir}'",
    ]
    if cron:
        lines += [
            "shared_preload_libraries = 'pg_cron'",
            f"cron.database_name = '{DATABASE}'",
            "cron.use_background_workers = on",
            "max_worker_processes = 32",
        ]
    return "\n".join(lines) + "\n"


def _write_config(base: Path, port: int, socket_dir: Path, cron: bool) -> None:
    pgdata = data_dir(base)
    main_conf = pgdata / "postgresql.conf"
    text = main_conf.read_text()
    if _INCLUDE_LINE not in text:
        main_conf.write_text(text.rstrip("\n") + f"\n\n# pgjobs dev cluster\n{_INCLUDE_LINE}\n")
    (pgdata / _CONF_FILE).write_text(_config(port, socket_dir, cron))
    socket_dir.mkdir(parents=True, exist_ok=True)
    user = _server_user()
    if user is not None:
        for path in (pgdata / _CONF_FILE, main_conf, socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
    else:
        os.chmod(socket_dir, 0o700)


# --- public API -------------------------------------------------------------------


def dsn_if_running() -> str | None:
    """The DSN of the embedded cluster if it is running, else None (never starts it)."""
    running = _postmaster(home())
    return dsn_for(running[1]) if running else None


def ensure_dsn() -> str:
    """The DSN of the embedded cluster, starting it (and creating it) when needed."""
    return dsn_if_running() or up()


def up() -> str:
    """Create the cluster if missing, start it if stopped; return its DSN. Idempotent."""
    with _home_errors():
        return _up()


def _up() -> str:
    base = home()
    _prepare_home(base)
    with _locked(base):
        running = _postmaster(base)
        if running:
            return dsn_for(running[1])
        bindir = find_bindir()
        cron = pg_cron_available(bindir)
        pgdata = data_dir(base)
        state = _read_state(base)
        if not (pgdata / "PG_VERSION").exists():
            if pgdata.exists() and any(pgdata.iterdir()):
                raise EmbeddedError(
                    f"{pgdata} is not empty but holds no cluster",
                    hint=f"remove {pgdata} or set PGJOBS_HOME to another directory",
                )
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                cwd=base,
                what="initdb",
            )
            state = {}
        port = state.get("port")
        if not isinstance(port, int) or not _port_free(port):
            port = _free_port()
        socket_dir = _socket_dir(base, port)
        state.update(port=port, socket_dir=str(socket_dir), bindir=str(bindir))
        _write_state(base, state)
        _write_config(base, port, socket_dir, cron)
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(_log_file(base)),
                "-w",
                "-t",
                "60",
                "start",
            ],
            cwd=base,
            what="pg_ctl start",
        )
        _create_database(port, cron)
        return dsn_for(port, DATABASE)


def _create_database(port: int, cron: bool) -> None:
    with db.connect(dsn_for(port, "postgres"), app="pgjobs-dev") as conn:
        if not db.scalar(conn, queries.EMBEDDED_DATABASE_EXISTS, {"name": DATABASE}):
            db.execute(conn, queries.EMBEDDED_CREATE_DATABASE)
    if cron:
        with db.connect(dsn_for(port, DATABASE), app="pgjobs-dev") as conn:
            if "pg_cron" in str(db.scalar(conn, queries.EMBEDDED_PRELOADED)):
                db.execute(conn, queries.EMBEDDED_CREATE_PG_CRON)


def down() -> bool:
    """Stop the cluster (fast shutdown). Returns False if it was not running."""
    with _home_errors():
        return _down()


def _down() -> bool:
    base = home()
    if not base.is_dir():
        return False  # nothing was ever set up there: not running, nothing created
    with _locked(base):
        if _postmaster(base) is None:
            return False
        state = _read_state(base)
        bindir = Path(state["bindir"]) if state.get("bindir") else find_bindir()
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data_dir(base)),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
            cwd=base,
            what="pg_ctl stop",
        )
        return True


def status() -> dict[str, Any]:
    """What ``pgjobs dev status`` shows: running, dsn, home, data_dir, port, pid, pg_cron
    (available / preloaded), log."""
    with _home_errors():
        return _status()


def _status() -> dict[str, Any]:
    base = home()
    state = _read_state(base)
    running = _postmaster(base)
    port = running[1] if running else state.get("port")
    try:
        cron_available: bool | None = pg_cron_available()
    except EmbeddedError:
        cron_available = None
    preloaded: bool | None = None
    if running:
        with (
            contextlib.suppress(PgjobsError),
            db.connect(dsn_for(running[1], "postgres"), app="pgjobs-dev") as conn,
        ):
            preloaded = "pg_cron" in str(db.scalar(conn, queries.EMBEDDED_PRELOADED))
    return {
        "running": running is not None,
        "dsn": dsn_for(port) if isinstance(port, int) else None,
        "home": str(base),
        "data_dir": str(data_dir(base)),
        "initialized": (data_dir(base) / "PG_VERSION").exists(),
        "port": port,
        "pid": running[0] if running else None,
        "socket_dir": state.get("socket_dir"),
        "pg_cron_available": cron_available,
        "pg_cron_preloaded": preloaded,
        "log": str(_log_file(base)),
    }
