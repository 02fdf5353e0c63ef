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
