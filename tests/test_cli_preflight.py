"""A command that runs a job in this process checks what the job will need before
it submits anything: one pre-flight (``storage.preflight``) for every store.

- `pgjobs export` (not --detach) resolves the credentials of the place it writes
  to (--storage, or --to) from the chain the worker uses; s3:// and gs://
  without credentials submitted a job that then failed, while az:// without an
  account was refused. `pgjobs import` does the same for its SOURCE, and a
  local SOURCE must be a readable regular file (a missing one was submitted).
  `pgjobs worker` checks its --storage at start.
- --detach checks none of it: the worker that will run the job has its own
  credentials and filesystem.

No database is needed: the DSN points where nothing listens, so a command that
got past its checks fails to connect (08001), which tells "refused before
submitting" from "went on to submit".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from pgjobs.poller import storage

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
CONNECTING = "[08001]"

# Each store, with the words its hint must name (the credential chain).
STORES = {
    "s3": ("s3://bucket/exports", ["AWS_PROFILE", "~/.aws/credentials", "AWS_*"]),
    "gs": ("gs://bucket/exports", ["GOOGLE_APPLICATION_CREDENTIALS"]),
    "az": ("az://container/exports", ["AZURE_STORAGE_ACCOUNT_NAME"]),
}


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No credential of any store anywhere the chains look, nor a setting of the
    caller's (the cached clients forgotten before and after)."""
    for name in list(os.environ):
        if name.startswith(("PGJOBS_", "AWS_", "GOOGLE_", "AZURE_", "AZURITE_", "CLOUDSDK_")) \
                or name in ("DATABASE_URL", "STORAGE_EMULATOR_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # google-auth: no metadata server probe
    monkeypatch.setenv("HOME", str(tmp_path))
    storage.forget_stores()
    yield
    storage.forget_stores()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])


def assert_refused(result: Result, option: str, sqlstate: str, *words: str) -> None:
    """One error line naming the option, with the SQLSTATE and a hint, before any
    connection (so before any submit)."""
    assert result.exit_code == (2 if sqlstate == "22023" else 1), result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and option in lines[0], lines[0]
    assert f"[{sqlstate}]" in lines[0] and "(hint: " in lines[0], lines[0]
    assert CONNECTING not in lines[0] and "submitted" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])


def assert_went_on(result: Result) -> None:
    """Past every check: it tried to connect."""
    assert result.exit_code == 1, result.output
    assert CONNECTING in result.stderr, result.stderr


# --- credentials: every store, every place a command writes or reads here ----------


@pytest.mark.parametrize("store", sorted(STORES))
def test_export_refuses_a_storage_without_credentials(store: str) -> None:
    uri, words = STORES[store]
    result = cli("--storage", uri, "export", "items", "--scope", "1")
    assert_refused(result, f"--storage {uri}", "28000", *words, "--detach")


@pytest.mark.parametrize("store", sorted(STORES))
def test_export_refuses_a_destination_without_credentials(store: str, tmp_path: Path) -> None:
    uri, words = STORES[store]
    result = cli("--storage", f"file://{tmp_path}", "export", "items", "--scope", "1",
                 "--to", uri)
    assert_refused(result, f"--to {uri}", "28000", *words)


@pytest.mark.parametrize("store", sorted(STORES))
def test_import_refuses_a_source_without_credentials(store: str, tmp_path: Path) -> None:
    uri, words = STORES[store]
    result = cli("--storage", f"file://{tmp_path}", "import", "items", f"{uri}/in.csv",
                 "--scope", "1")
    assert_refused(result, "SOURCE", "28000", *words)


@pytest.mark.parametrize("store", sorted(STORES))
def test_worker_refuses_a_storage_without_credentials(store: str) -> None:
    uri, words = STORES[store]
    result = cli("--storage", uri, "worker", "--once")
    assert_refused(result, f"--storage {uri}", "28000", *words)


@pytest.mark.parametrize("store", sorted(STORES))
def test_detach_needs_no_local_credentials(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker elsewhere runs it: nothing of this machine's is required (the
    storage from the environment, which a detached command leaves to the worker)."""
    uri, _ = STORES[store]
    monkeypatch.setenv("PGJOBS_STORAGE", uri)
    assert_went_on(cli("export", "items", "--scope", "1", "--detach"))
    assert_went_on(cli("export", "items", "--scope", "1", "--to", uri, "--detach"))
    assert_went_on(cli("import", "items", f"{uri}/in.csv", "--scope", "1", "--detach"))


def _credentials(store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 how: str) -> None:
    if store == "s3" and how == "env":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    elif store == "s3":
        (tmp_path / "aws-credentials").write_text(
            "[pgjobs]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
        monkeypatch.setenv("AWS_PROFILE", "pgjobs")
    elif store == "gs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    else:
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    storage.forget_stores()


@pytest.mark.parametrize(("store", "how"), [("s3", "env"), ("s3", "profile"), ("gs", "env"),
                                            ("az", "env")])
def test_credentials_from_the_chain_pass(store: str, how: str,
                                         monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """Credentials from the environment or a profile file get past the check
    (the moto, fake-gcs and Azurite tests' ways included)."""
    _credentials(store, monkeypatch, tmp_path, how)
    uri, _ = STORES[store]
    assert_went_on(cli("--storage", uri, "export", "items", "--scope", "1"))
    assert_went_on(cli("--storage", f"file://{tmp_path}", "import", "items",
                       f"{uri}/in.csv", "--scope", "1"))


# --- a local SOURCE ---------------------------------------------------------------


def _sources(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("id\n")
    os.mkfifo(tmp_path / "fifo")
    return {"missing": str(tmp_path / "missing.csv"),
            "directory": str(tmp_path / "folder"),
            "under a file": str(tmp_path / "a-file" / "in.csv"),
            "fifo": str(tmp_path / "fifo")}


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
@pytest.mark.parametrize("case", ["missing", "directory", "under a file", "fifo"])
def test_import_refuses_a_local_source_it_cannot_read(case: str, as_uri: bool,
                                                      tmp_path: Path) -> None:
    """Repro: `pgjobs import items missing.csv --scope 1` submitted a job that
    then failed; a file:// URI alike, and a FIFO is refused, never waited on."""
    source = _sources(tmp_path)[case]
    result = cli("--storage", f"file://{tmp_path}", "import", "items",
                 f"file://{source}" if as_uri else source, "--scope", "1")
    assert_refused(result, "SOURCE", "22023")


def test_import_of_a_readable_file_goes_on(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,tenant\n1,1\n")
    assert_went_on(cli("--storage", f"file://{tmp_path}", "import", "items",
                       str(tmp_path / "in.csv"), "--scope", "1"))


def test_detached_import_of_a_missing_file_is_the_workers_to_read(tmp_path: Path) -> None:
    """With --detach a worker reads the file, on its own machine."""
    assert_went_on(cli("import", "items", str(tmp_path / "missing.csv"), "--scope", "1",
                       "--detach"))


# --- a local folder written here ----------------------------------------------------


@pytest.mark.parametrize("under", ["the file", "below the file"])
def test_a_local_destination_that_is_no_folder_is_refused(under: str, tmp_path: Path) -> None:
    """Repro: `--to file:///path/of/a/file` submitted an export that then failed
    ("Not a directory"); --storage alike, and a worker at start."""
    (tmp_path / "a-file").write_text("")
    bad = f"file://{tmp_path}/a-file" + ("" if under == "the file" else "/exports")
    assert_refused(cli("--storage", bad, "export", "items", "--scope", "1"),
                   f"--storage {bad}", "22023", "is not a folder")
    assert_refused(cli("export", "items", "--scope", "1", "--to", bad),
                   f"--to {bad}", "22023", "is not a folder")
    assert_refused(cli("--storage", bad, "worker", "--once"), f"--storage {bad}", "22023",
                   "is not a folder")


def test_a_local_destination_yet_to_be_made_goes_on(tmp_path: Path) -> None:
    """The exporter makes the folders of its prefix: one not there yet is fine."""
    assert_went_on(cli("--storage", f"file://{tmp_path}/new/exports", "export", "items",
                       "--scope", "1"))
    assert_went_on(cli("export", "items", "--scope", "1", "--to",
                       f"file://{tmp_path}/new/exports/"))


# --- credentials the chain fetches on first use, or from an endpoint --------------


@pytest.fixture
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request botocore sends (STS, SSO, S3...), refused and recorded: a
    pre-flight sends none of its own."""
    import botocore.endpoint

    sent: list[str] = []

    def make_request(self: object, model: object, request_dict: object) -> object:
        sent.append(getattr(model, "name", "?"))
        raise ConnectionError("no request is sent by a pre-flight")

    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", make_request)
    return sent


def _aws_deferred(how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials botocore fetches on first use (DeferredRefreshableCredentials)."""
    role = "arn:aws:iam::123456789012:role/pgjobs"
    if how == "assume-role":
        (tmp_path / "aws-credentials").write_text(
            "[base]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        (tmp_path / "aws-config").write_text(
            f"[profile exporter]\nrole_arn = {role}\nsource_profile = base\n")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
        monkeypatch.setenv("AWS_PROFILE", "exporter")
    else:  # web identity (EKS IRSA)
        (tmp_path / "token").write_text("eyJ.token.here")
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
        monkeypatch.setenv("AWS_ROLE_ARN", role)
    storage.forget_stores()


@pytest.mark.parametrize("how", ["assume-role", "web-identity"])
def test_credentials_fetched_on_first_use_pass_without_a_request(
        how: str, requests_sent: list[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Repro: a profile with role_arn/source_profile (or a web identity token)
    made every `pgjobs export` call STS before submitting, and refused the
    export when STS did not answer; the worker exited at start. The job
    fetches them (and retries): the check only asks whether the chain has them."""
    _aws_deferred(how, monkeypatch, tmp_path)
    assert_went_on(cli("--storage", "s3://bucket/exports", "export", "items", "--scope", "1"))
    assert_went_on(cli("--storage", f"file://{tmp_path}", "import", "items",
                       "s3://bucket/in.csv", "--scope", "1"))
    assert_went_on(cli("--storage", "s3://bucket/exports", "worker", "--once"))
    assert requests_sent == []


def test_an_unreachable_credential_endpoint_is_no_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Repro: the ECS/EKS container credential endpoint not answering (it is set:
    AWS_CONTAINER_CREDENTIALS_FULL_URI) was refused as "no usable credentials"
    and `pgjobs worker` exited at start, to stay down after a blip. A failure
    that may pass goes on (the storage calls are retried); only a definite
    absence of credentials is refused."""
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/credentials")
    storage.forget_stores()
    assert_went_on(cli("--storage", "s3://bucket/exports", "worker", "--once"))
    assert_went_on(cli("--storage", "s3://bucket/exports", "export", "items", "--scope", "1"))


def test_a_retryable_failure_of_any_store_is_no_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The class: whatever the store, a pre-flight failure that another attempt
    may fix (network, timeout, 5xx) never refuses; a permanent one does."""
    from pgjobs.poller import gcs
    from pgjobs.poller import s3client as s3

    def down() -> None:
        raise s3.S3Error(0, "", "ConnectTimeoutError: timed out", retryable=True)

    monkeypatch.setattr(s3, "check_credentials", down)
    storage.preflight(storage.parse("s3://bucket/x"), "--storage")

    def gone() -> None:
        raise gcs.GcsError("metadata server: 503", retryable=True)

    monkeypatch.setattr(gcs, "client", gone)
    storage.preflight(storage.parse("gs://bucket/x"), "--storage")

    def absent() -> None:
        raise gcs.GcsError("no Google credentials", retryable=False, credentials=True)

    monkeypatch.setattr(gcs, "client", absent)
    with pytest.raises(storage.StorageError) as refused:
        storage.preflight(storage.parse("gs://bucket/x"), "--storage")
    assert refused.value.sqlstate == "28000"


# --- what a shell leaves unexpanded ---------------------------------------------------


@pytest.mark.parametrize("detach", [False, True], ids=["here", "detach"])
@pytest.mark.parametrize("source", ["-", "~/rows.csv", "~", "file://~/rows.csv"])
def test_a_source_the_shell_did_not_expand_is_refused(source: str, detach: bool,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Repro: `pgjobs import t - --scope 1` named file://$PWD/-, and a quoted
    '~/rows.csv' (or file://~/...) ./~/rows.csv: refused as missing, or with
    --detach submitted for a worker that could only fail. Refused either way,
    saying why."""
    monkeypatch.chdir(tmp_path)
    storage_args = [] if detach else ["--storage", f"file://{tmp_path}"]
    result = cli(*storage_args, "import", "items", source, "--scope", "1",
                 *(["--detach"] if detach else []))
    assert_refused(result, "standard input" if source == "-" else "~ ", "22023")
    assert "No such file" not in result.stderr


@pytest.mark.parametrize("option", ["--storage", "--to"])
def test_a_destination_under_an_unexpanded_tilde_is_refused(option: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    # --detach checks no store, but still reads the --to it submits.
    args = (["--storage", "file://~/exports", "export", "items"] if option == "--storage" else
            ["export", "items", "--detach", "--to", "file://~/exports"])
    result = cli(*args, "--scope", "1")
    assert_refused(result, "~", "22023", "file:///")
    assert not (tmp_path / "~").exists()


def test_a_local_source_by_any_spelling_goes_on(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative, through a symlink, with spaces and non-ASCII letters, a file
    named '~x' that is there: all read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my rows é.csv").write_text("id,tenant\n1,1\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "my rows é.csv")
    (tmp_path / "~x.csv").write_text("id,tenant\n1,1\n")
    for source in ["my rows é.csv", "./link.csv", "~x.csv", f"file://{tmp_path}/my rows é.csv"]:
        assert_went_on(cli("--storage", f"file://{tmp_path}", "import", "items", source,
                           "--scope", "1"))
