"""The storage fixtures, registered for every test by tests/conftest.py
(`pytest_plugins`): request them by name, never import them.

* `local_dir`: a file:// export prefix in the test's tmp_path.
* `export_where`: an export prefix on each of file://, memory:// and S3 (moto), a
  test run once per store.
* `s3_endpoint` / `s3_env` / `bucket`: a real S3 wire protocol (moto's
  ThreadedMotoServer on 127.0.0.1, once per session), AWS_* variables pointing at
  it, a new bucket per test; `big`: a target large enough for multipart parts.
* `s3_fault_proxy`: moto reached through a fault-injecting proxy
  (tests/support/s3_faults.py), AWS_* variables pointing at it.
* `azurite_endpoint` / `az_env` / `az_container` and `gcs_endpoint` / `gcs_env` /
  `gcs_bucket`: Azure Blob (Azurite) and Google Cloud Storage
  (gcp-storage-emulator) servers on 127.0.0.1, started once per test session,
  for the az:// and gs:// paths.

Each test that uses them is skipped ONLY when the emulator itself is not
installed on this machine; CI (``.ci/run``) installs both, so they run there:

* Azurite comes from the npm registry. It is found at ``$PGJOBS_AZURITE`` (the
  ``azurite-blob`` script), on ``PATH``, or where ``.ci/run`` installs it
  (``$PGJOBS_NODE_CACHE``, default ``~/.cache/pgjobs/node``, under
  ``node_modules/.bin``).
* gcp-storage-emulator is a Python package (the dev extra).

Fixtures point obstore at them through the variables an operator would set
(``AZURE_STORAGE_*``, ``GOOGLE_SERVICE_ACCOUNT``), so worker processes started
by a test see the same configuration.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from tests.support.net import free_port
from tests.support.targets import build_target

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published well-known development key (not a secret).
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def azurite_binary() -> str | None:
    """The ``azurite-blob`` script, or None when Azurite is not installed here."""
    explicit = os.environ.get("PGJOBS_AZURITE")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("azurite-blob")
    if found:
        return found
    cache = Path(os.environ.get("PGJOBS_NODE_CACHE")
                 or Path.home() / ".cache" / "pgjobs" / "node")
    candidate = cache / "node_modules" / ".bin" / "azurite-blob"
    return str(candidate) if os.access(candidate, os.X_OK) else None


class _Exited(RuntimeError):
    """The server exited before it listened (its port taken meanwhile, say)."""


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (Linux's
    /proc); None where /proc cannot tell."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    # A process that is exiting (it could not bind the port, say) loses its
    # fds while they are read: it listens on nothing. Taking that for "cannot
    # tell" let a connection to another program on the port pass for it.
    fds: set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in names:
        with contextlib.suppress(OSError):
            fds.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    for line in table:
        fields = line.split()
        if (fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
                and f"socket:[{fields[9]}]" in fds):
            return True
    return False


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str,
                    log: Path, timeout: float = 60.0) -> None:
    """Until ``proc`` itself listens on ``port``: a connection that succeeds
    may reach another program that took the port first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _Exited(f"{what} exited with {proc.returncode}: "
                          f"{log.read_text(errors='replace')[-2000:]}")
        ours = _listens(proc.pid, port)
        if ours:
            return
        if ours is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _serve(command: Callable[[int], list[str]], what: str,
           log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server on a free port, and on another if it exits first: a port
    found free is only free until some other program binds it (a test cluster,
    a client's ephemeral port) before this server does. The server's log goes
    to ``log``."""
    for attempt in range(5):
        port = free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(command(port), stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_listening(port, proc, what, log)
        except _Exited:
            if attempt == 4:
                raise
            continue
        except BaseException:
            _stop(proc)
            raise
        return proc, port
    raise AssertionError("unreachable")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --- Azurite ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of an Azurite blob service for this session."""
    binary = azurite_binary()
    if binary is None:
        pytest.skip("Azurite is not installed here (npm install azurite; CI installs it)")
    workdir = tmp_path_factory.mktemp("azurite")
    proc, port = _serve(lambda port: [
        binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
        str(workdir), "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
        "azurite", workdir / "azurite.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _azure_create_container(endpoint: str, container: str) -> None:
    """PUT ?restype=container with a SharedKey signature (obstore cannot create
    containers; the test needs one per test)."""
    import requests

    date = formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": "2021-08-06"}
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    to_sign = "PUT\n" + "\n" * 11 + canonical_headers + resource
    signature = base64.b64encode(hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(),
                                          hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {AZURITE_ACCOUNT}:{signature}"
    response = requests.put(f"{endpoint}/{AZURITE_ACCOUNT}/{container}?restype=container",
                            headers=headers, timeout=30)
    assert response.status_code == 201, response.text


@pytest.fixture
def az_env(azurite_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """AZURE_* variables pointing at Azurite (seen by worker processes too): the
    emulator switch plus its account and key, as an operator would set them."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "AZURITE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azurite_endpoint)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY)
    monkeypatch.setenv("AZURE_ALLOW_HTTP", "true")
    storage.forget_stores()
    yield azurite_endpoint
    storage.forget_stores()


@pytest.fixture
def az_container(az_env: str) -> str:
    """A new container; returns its export prefix az://container/exports/."""
    name = f"pgjobs-{uuid.uuid4().hex[:12]}"
    _azure_create_container(az_env, name)
    return f"az://{name}/exports/"


# --- gcp-storage-emulator ---------------------------------------------------------


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of gcp-storage-emulator (in memory) for this session."""
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip("gcp-storage-emulator is not installed here (it is in the dev extra)")
    workdir = tmp_path_factory.mktemp("gcs")
    proc, port = _serve(lambda port: [
        sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
        "--port", str(port), "--in-memory"], "gcp-storage-emulator", workdir / "gcs.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def gcs_env(gcs_endpoint: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """GOOGLE_* variables pointing at the emulator: obstore's GCS store takes a
    custom endpoint only from a service-account file (``gcs_base_url``, with
    ``disable_oauth``)."""
    for name in list(os.environ):
        if name.startswith("GOOGLE_"):
            monkeypatch.delenv(name)
    account = tmp_path / "gcs-service-account.json"
    account.write_text(json.dumps({"gcs_base_url": gcs_endpoint, "disable_oauth": True,
                                   "client_email": "", "private_key": "",
                                   "private_key_id": ""}))
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    monkeypatch.setenv("GOOGLE_ALLOW_HTTP", "true")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    storage.forget_stores()
    yield gcs_endpoint
    storage.forget_stores()


@pytest.fixture
def gcs_bucket(gcs_env: str) -> str:
    """A new bucket (JSON API); returns its export prefix gs://bucket/exports/."""
    import requests

    name = f"pgjobs-{uuid.uuid4().hex[:12]}"
    response = requests.post(f"{gcs_env}/storage/v1/b", json={"name": name}, timeout=30)
    assert response.status_code == 200, response.text
    return f"gs://{name}/exports/"


# --- S3 through moto ------------------------------------------------------------


@pytest.fixture
def big(conn: psycopg.Connection[Any]) -> None:
    """A target `big` with about 17 MB in tenant 1 (~20 KB rows): four S3 parts
    of 5 MiB."""
    build_target(conn, "big", "id int NOT NULL, tenant int, created_at timestamptz NOT NULL"
                 " DEFAULT now() - interval '1 minute', body text", scope="tenant")
    conn.execute("INSERT INTO big (id, tenant, body) SELECT g, g % 2, repeat(md5(g::text), 600) "
                 "FROM generate_series(1, 1700) g")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS_* or PGJOBS_S3_* variable of the caller's; never the developer's
    own ~/.aws, nor an instance metadata lookup; region us-east-1. Credentials
    and the endpoint are the caller's to set."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PGJOBS_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """AWS_* variables pointing at the moto server (also seen by worker processes)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    storage.forget_stores()
    yield s3_endpoint
    storage.forget_stores()


@pytest.fixture
def bucket(s3_env: str) -> str:
    """A new bucket; returns its export prefix s3://bucket/exports/."""
    import boto3

    name = f"pgjobs-{uuid.uuid4().hex[:12]}"
    # A session of its own: the default one keeps the environment it first saw.
    boto3.session.Session().client("s3", endpoint_url=s3_env,
                                   region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}/exports/"


@pytest.fixture
def s3_fault_proxy(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                   tmp_path: Path) -> Iterator[Any]:
    """The worker talks to moto through a fault proxy (tests/support/s3_faults.py);
    botocore retries once per call and waits 2 s on a silent connection, so
    faults show quickly."""
    from tests.support.s3_faults import FaultProxy

    clean_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    faulty = FaultProxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
    monkeypatch.setenv("PGJOBS_S3_TIMEOUT", "2")
    monkeypatch.setenv("PGJOBS_S3_ATTEMPTS", "1")
    storage.forget_stores()
    yield faulty
    faulty.stop()
    storage.forget_stores()


@pytest.fixture
def local_dir(tmp_path: Any) -> str:
    return f"file://{tmp_path}/exports"


@pytest.fixture(params=["file", "memory", "s3"])
def export_where(request: pytest.FixtureRequest, local_dir: str) -> str:
    """An export prefix on file://, memory:// or S3: the test runs on each."""
    if request.param == "file":
        return local_dir
    if request.param == "memory":
        return f"memory:///{uuid.uuid4().hex[:8]}/"
    return str(request.getfixturevalue("bucket"))
