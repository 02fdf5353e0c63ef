"""The storage pre-flight's reading of AWS credential sources that are endpoints
or that carry an expiry (poller/storage.py preflight, poller/s3client.py).

- An instance metadata endpoint that takes the connection and never answers (a
  slow or overloaded IMDS) is a warning, not a refusal: botocore swallowed the
  timeout, the chain read as empty and `pgjobs worker` exited 28000 "no AWS
  credentials found". A worker's start waits for it once (one resolution of the
  chain), not once per start-up step. An endpoint that refuses the connection
  (nothing there: a laptop) still reads as "no credentials", refused.
- Credentials that are expired where the pre-flight can tell without a request
  (static session credentials with AWS_CREDENTIAL_EXPIRATION in the past) are
  refused at start, naming the expiry; they passed and the job failed.

No S3 and no database: the endpoint is a local socket that accepts and never
answers; a command that got past its pre-flight fails to connect (08001).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from pgjobs.poller import s3client, storage
from pgjobs.poller.storage import StorageError

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


class Silent:
    """A TCP endpoint on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No credential source but the ones a test sets: no AWS_* variable, empty
    config and credentials files, a HOME of its own."""
    for var in list(os.environ):
        if var.startswith(("AWS_", "PGJOBS_")) or var == "DATABASE_URL":
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
    storage.forget_stores()
    yield
    storage.forget_stores()


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Silent]:
    endpoint = Silent()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{endpoint.port}/")
    yield endpoint
    endpoint.close()


def _refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint where nothing listens (connection refused)."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}/")


def test_a_metadata_endpoint_that_never_answers_is_a_warning(
        silent: Silent, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")
    assert silent.accepted, "the chain never asked the endpoint: the test set-up is stale"
    assert "did not answer" in caplog.text and "going on" in caplog.text, caplog.text


def test_a_metadata_endpoint_that_refuses_the_connection_is_no_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch)
    with pytest.raises(StorageError) as refused:
        storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")
    assert refused.value.sqlstate == "28000", refused.value
    assert "no AWS credentials found" in str(refused.value)


def test_a_worker_starts_past_a_silent_endpoint_and_waits_for_it_once(silent: Silent) -> None:
    """One resolution's worth of requests (counted here, on a fresh chain), not
    one per start-up step (pre-flight, warm-up of the client, of the chain)."""
    with pytest.raises(s3client.S3Error) as unanswered:
        s3client.check_credentials()
    assert unanswered.value.retryable, unanswered.value
    one_resolution = len(silent.accepted)
    assert one_resolution >= 1
    storage.forget_stores()
    before = len(silent.accepted)
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "--storage", "s3://bucket/p",
                                       "worker", "--once"])
    assert result.exit_code == 1 and "[08001]" in result.stderr, result.output
    assert "no AWS credentials" not in result.stderr
    assert len(silent.accepted) - before == one_resolution, len(silent.accepted) - before


def test_an_export_here_goes_on_past_a_silent_endpoint(silent: Silent) -> None:
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "--storage", "s3://bucket/p",
                                       "export", "items", "--scope", "1"])
    assert result.exit_code == 1 and "[08001]" in result.stderr, result.output
    assert "[28000]" not in result.stderr, result.stderr


def test_credentials_found_are_not_held_back_by_the_endpoint(
        silent: Silent, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials earlier in the chain: the endpoint is never asked."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")
    assert not silent.accepted
    assert not s3client.metadata_unanswered()


# --- credentials found but expired ---------------------------------------------------


def _preflight_refusal() -> str:
    with pytest.raises(StorageError) as refused:
        storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")
    assert refused.value.sqlstate == "28000", refused.value
    return str(refused.value)


def test_expired_session_credentials_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2020-01-01T00:00:00Z")
    message = _preflight_refusal()
    assert "expired at 2020-01-01" in message and "AWS_CREDENTIAL_EXPIRATION" in message


@pytest.mark.parametrize("expiration", ["2099-01-01T00:00:00Z", None])
def test_session_credentials_not_expired_pass(expiration: str | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    if expiration:
        monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", expiration)
    storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")


START_URL = "https://example.awsapps.com/start"


def _sso_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, session: bool,
                 token: dict[str, str] | None) -> None:
    """An SSO profile `dev` (legacy, or through an sso-session `corp`) and the token
    cache `aws sso login` would leave (none when ``token`` is None)."""
    import hashlib
    import json

    import botocore.credentials

    cache = tmp_path / "sso-cache"
    cache.mkdir()
    monkeypatch.setattr(botocore.credentials.SSOProvider, "_SSO_TOKEN_CACHE_DIR", str(cache))
    if session:
        config = ("[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n"
                  "sso_role_name = R\n\n[sso-session corp]\n"
                  f"sso_start_url = {START_URL}\nsso_region = us-east-1\n")
    else:
        config = (f"[profile dev]\nsso_start_url = {START_URL}\nsso_region = us-east-1\n"
                  "sso_account_id = 123456789012\nsso_role_name = R\n")
    (tmp_path / "config").write_text(config)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    if token is not None:
        key = hashlib.sha1(("corp" if session else START_URL).encode()).hexdigest()  # noqa: S324
        (cache / f"{key}.json").write_text(json.dumps(token))
    storage.forget_stores()


@pytest.mark.parametrize("session", [False, True], ids=["legacy", "sso-session"])
def test_an_expired_sso_login_is_refused(session: bool, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _sso_profile(tmp_path, monkeypatch, session=session,
                 token={"accessToken": "t", "expiresAt": "2020-01-01T00:00:00Z"})
    message = _preflight_refusal()
    assert "SSO login expired at 2020-01-01" in message and "aws sso login" in message


def test_a_missing_sso_login_is_refused(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _sso_profile(tmp_path, monkeypatch, session=False, token=None)
    message = _preflight_refusal()
    assert "no SSO login is cached" in message and "aws sso login --profile dev" in message


@pytest.mark.parametrize(("session", "token"), [
    (False, {"accessToken": "t", "expiresAt": "2099-01-01T00:00:00Z"}),
    # Expired, but an sso-session's refresh token renews it (a request: the job's).
    (True, {"accessToken": "t", "expiresAt": "2020-01-01T00:00:00Z", "refreshToken": "r",
            "clientId": "c", "clientSecret": "s", "registrationExpiresAt":
            "2099-01-01T00:00:00Z", "region": "us-east-1", "startUrl": START_URL}),
], ids=["valid", "refreshable"])
def test_a_usable_sso_login_passes(session: bool, token: dict[str, str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _sso_profile(tmp_path, monkeypatch, session=session, token=token)
    storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")


# --- an endpoint that answers part of the way; a container's endpoint ------------------


class TokenSilent(Silent):
    """An instance metadata endpoint that never answers IMDSv2's token request (a
    PUT: a container behind a hop limit of 1) but answers IMDSv1's requests: "no
    role here" (404)."""

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        try:
            request = conn.recv(65536)
            if request.startswith(b"PUT"):
                return  # never answered
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
        except OSError:
            pass


def test_an_endpoint_that_answers_no_role_is_no_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The token request timed out, the role request was answered (no role): the
    endpoint answered, so "no credentials" stands (exit 1), not a warning that let
    a worker with no credentials start and fail every job."""
    endpoint = TokenSilent()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{endpoint.port}/")
    try:
        message = _preflight_refusal()
    finally:
        endpoint.close()
    assert len(endpoint.accepted) >= 2, "no IMDSv1 request followed: the set-up is stale"
    assert "no AWS credentials found" in message, message
    assert not s3client.metadata_unanswered()


def test_a_silent_container_endpoint_is_waited_for_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_CONTAINER_CREDENTIALS_FULL_URI (ECS, EKS Pod Identity) that takes the
    connection and never answers: a warning at start, and one resolution's wait
    (botocore's attempts), not one per start-up step as the warm-up resolved the
    chain again."""
    import botocore.utils

    # botocore's waits shortened (2 s a request, 3 attempts, 1 s apart): the same path.
    fetcher = botocore.utils.ContainerMetadataFetcher
    monkeypatch.setattr(fetcher, "TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(fetcher, "RETRY_ATTEMPTS", 2)
    monkeypatch.setattr(fetcher, "SLEEP_TIME", 0.1)
    endpoint = Silent()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                       f"http://127.0.0.1:{endpoint.port}/creds")
    try:
        with pytest.raises(s3client.S3Error) as unanswered:
            s3client.check_credentials()
        assert unanswered.value.retryable, unanswered.value
        one_resolution = len(endpoint.accepted)
        assert one_resolution >= 1
        storage.forget_stores()
        before = len(endpoint.accepted)
        result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "--storage", "s3://bucket/p",
                                           "worker", "--once"])
        assert result.exit_code == 1 and "[08001]" in result.stderr, result.output
        assert "no AWS credentials" not in result.stderr
        assert len(endpoint.accepted) - before == one_resolution, \
            (len(endpoint.accepted) - before, one_resolution)
    finally:
        endpoint.close()


# --- expiries that are not expired; botocore laid out otherwise -------------------------


def _process_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     expirations: list[str]) -> None:
    """Profile `proc` with a credential_process that gives ``expirations`` in turn
    (the last one from then on)."""
    import json
    import sys

    state = tmp_path / "calls"
    state.write_text("0")
    script = tmp_path / "creds.py"
    script.write_text(
        "import json, pathlib\n"
        f"state = pathlib.Path({str(state)!r})\n"
        "n = int(state.read_text()); state.write_text(str(n + 1))\n"
        f"expirations = {json.dumps(expirations)}\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': 'AKIAEXAMPLE', 'SecretAccessKey':"
        " 's', 'SessionToken': 't', 'Expiration': expirations[min(n, len(expirations) - 1)]"
        "}))\n")
    (tmp_path / "config").write_text(
        f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_PROFILE", "proc")
    storage.forget_stores()


def _at(delta: timedelta, offset_hours: int = 0) -> str:
    zone = timezone(timedelta(hours=offset_hours))
    return (datetime.now(timezone.utc) + delta).astimezone(zone).isoformat(timespec="seconds")


@pytest.mark.parametrize("expirations", [
    [_at(timedelta(hours=1))],
    # An hour ahead, written where the clock reads earlier than UTC's now.
    [_at(timedelta(hours=1), -9)],
    # Expired at first, renewed by botocore's refresh (the process run again).
    ["2020-01-01T00:00:00Z", _at(timedelta(hours=1), 9)],
], ids=["future", "future-west-of-utc", "renewed"])
def test_credentials_botocore_would_use_pass(expirations: list[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch)
    _process_profile(tmp_path, monkeypatch, expirations)
    storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")


def test_a_process_that_gives_only_expired_credentials_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch)
    _process_profile(tmp_path, monkeypatch, ["2020-01-01T00:00:00Z"])
    assert "expired at 2020-01-01" in _preflight_refusal()


@pytest.mark.parametrize("expiration", [_at(timedelta(hours=1), -9), _at(timedelta(hours=-1), 9)],
                         ids=["future", "past"])
def test_an_expiration_in_another_zone_is_read_as_that_instant(
        expiration: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", expiration)
    if expiration.endswith("-09:00"):
        storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")
    else:
        assert "AWS_CREDENTIAL_EXPIRATION" in _preflight_refusal()


def test_an_assumed_role_is_left_to_the_job(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A role_arn with a source_profile is fetched on first use (a request): never
    judged here, whatever the source's keys."""
    _refusing(monkeypatch)
    (tmp_path / "config").write_text(
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/R\nsource_profile = src\n"
        "\n[profile src]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_PROFILE", "role")
    storage.forget_stores()
    storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")


@pytest.fixture
def other_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A botocore whose providers lack the private attributes the pre-flight reads
    (an SSO provider's _load_sso_config and _token_cache, the instance metadata
    provider's _role_fetcher): the chain itself is untouched."""
    import botocore.credentials

    monkeypatch.setattr(botocore.credentials.CredentialResolver, "get_provider",
                        lambda self, name: object())
    storage.forget_stores()


def test_another_botocore_layout_skips_the_sso_check(other_layout: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An expired SSO login is then the job's to find: no refusal, no crash."""
    _sso_profile(tmp_path, monkeypatch, session=False,
                 token={"accessToken": "t", "expiresAt": "2020-01-01T00:00:00Z"})
    storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")


def test_another_botocore_layout_reads_a_silent_endpoint_as_before(
        other_layout: None, silent: Silent) -> None:
    """Nothing to watch: a silent instance metadata endpoint reads as no
    credentials, as before the watch, and nothing else breaks."""
    assert "no AWS credentials found" in _preflight_refusal()
    assert silent.accepted


@pytest.mark.parametrize("token", [{"accessToken": "t", "expiresAt": 12},
                                   {"accessToken": "t", "expiresAt": "2020-01-01T00:00:00UTC"}],
                         ids=["a-number", "another-format"])
def test_an_sso_token_read_otherwise_is_left_to_the_job(
        token: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A cached token whose expiry this reading cannot judge is no refusal and no
    warning of an error: botocore, when it signs, judges it."""
    _sso_profile(tmp_path, monkeypatch, session=False, token=token)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        storage.preflight(storage.parse("s3://bucket/prefix"), "--storage")
    assert "Error" not in caplog.text, caplog.text
