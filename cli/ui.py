"""`pgjobs ui`: serve the web dashboard (pgjobs.ui; the optional extra ui)."""

from __future__ import annotations

from pathlib import Path

import click

from pgjobs import db, queries
from pgjobs.cli.common import Context, on_command_line, refuse_ignored
from pgjobs.errors import InvalidInput


def resolve_token(token: str | None, token_file: str | None) -> str | None:
    """The token given, else the first line of the token file; refuses an empty or
    short one."""
    if token is None and token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip().splitlines()[0]
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read a token from {token_file}: {exc}",
                               hint="the file's first line is the token") from None
    if token is not None and len(token.strip()) < 16:
        raise InvalidInput("the token is too short (fewer than 16 characters)",
                           hint="use e.g. `openssl rand -hex 24`")
    return token.strip() if token is not None else None


@click.command()
@click.option("--host", envvar="PGJOBS_UI_HOST", show_envvar=True, default="127.0.0.1",
              show_default=True, help="Address to bind; any non-loopback one needs a token.")
@click.option("--port", envvar="PGJOBS_UI_PORT", show_envvar=True, type=click.IntRange(1, 65535),
              default=8765, show_default=True, help="Port to bind.")
@click.option("--read-only", is_flag=True, envvar="PGJOBS_UI_READ_ONLY", show_envvar=True,
              help="Offer no action (cancel, pause, resume, retry) and refuse them.")
@click.option("--token", envvar="PGJOBS_UI_TOKEN", show_envvar=True, default=None,
              help="Require this token (open /?token=T once, or send a Bearer header).")
@click.option("--token-file", envvar="PGJOBS_UI_TOKEN_FILE", show_envvar=True, default=None,
              type=click.Path(dir_okay=False), help="Read the token from this file.")
@click.option("--access-log", is_flag=True, envvar="PGJOBS_UI_ACCESS_LOG", show_envvar=True,
              help="Log one line per request on stderr: method, path (as text, never the "
                   "query string), status and duration. Off: only refused and failed "
                   "requests are logged.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, envvar="PGJOBS_LOG_FORMAT", show_envvar=True,
              help="Log lines on stderr: text, or one JSON object a line; both carry an "
                   "ISO 8601 UTC time and the level.")
@click.pass_obj
def ui(obj: Context, host: str, port: int, read_only: bool, token: str | None,
       token_file: str | None, access_log: bool, log_format: str) -> None:
    """Serve the web dashboard: jobs with live progress and actions, /events (SSE),
    /metrics (Prometheus), /api/jobs (JSON). It acts as the DSN's role."""
    from pgjobs.ui import require_extra

    require_extra()
    from pgjobs.ui.app import Settings, is_loopback, listening_socket, serve

    if token is not None and on_command_line("token_file") and not on_command_line("token"):
        # The command line wins over the environment, as everywhere: --token-file
        # given here with a PGJOBS_UI_TOKEN set for every run was refused as ignored.
        token = None
    if token is not None:
        refuse_ignored(["token_file"], "with --token: the token given on the command line "
                       "is used", hint="give the token one way: --token or --token-file")
    secret = resolve_token(token, token_file)
    if secret is None and not is_loopback(host):
        raise InvalidInput(f"binding {host} needs a token",
                           hint="pass --token (or --token-file, PGJOBS_UI_TOKEN), or bind "
                                "127.0.0.1")
    dsn = obj.dsn()
    # Reach the database once before serving: a wrong DSN or a server that is down
    # is the command's one-line error (exit 1 or 2), not a traceback from the web
    # server's startup; a database without pgjobs is the migrate hint every command
    # gives (exit 1), not a dashboard whose every page and scrape fails while its
    # LISTEN, which succeeds in any database, reports it healthy.
    with obj.connect(app="pgjobs ui") as conn:
        db.execute(conn, queries.INSTALLED)
    listening = listening_socket(host, port)  # 55006 when the port is taken
    shown = "localhost" if is_loopback(host) else host
    click.echo(f"pgjobs ui: http://{shown}:{port}/" + ("?token=..." if secret else "")
               + (" (read-only)" if read_only else ""), err=True)
    serve(Settings(dsn=dsn, read_only=read_only, token=secret, storage=obj.storage,
                   access_log=access_log, log_format=log_format), listening)
