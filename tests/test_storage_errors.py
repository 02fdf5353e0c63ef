"""Every storage error a job or a command reports has a SQLSTATE and a hint:
which store, what is missing, what to do (obstore's errors for file, memory,
gs and az; botocore's for S3: missing credentials, unknown bucket, access
denied, bad endpoint)."""

from __future__ import annotations

import errno
import os
import re
from typing import Any

import psycopg
import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage
from tests.support import make_items, run_export, submit_export

Conn = psycopg.Connection[Any]
SQLSTATE = re.compile(r"\[[0-9A-Z]{5}\]")


@pytest.fixture(autouse=True)
def _no_cloud_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient Azure account: what the worker sees is the test's."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "AZURITE_")):
            monkeypatch.delenv(name)
    storage.forget_stores()


# --- every storage error: a SQLSTATE, a hint ---------------------------------------


def _botocore(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _s3_cases() -> list[tuple[str, Exception, str, str]]:
    from botocore import exceptions as be

    return [
        ("no credentials", be.NoCredentialsError(), "28000", "AWS credentials"),
        ("bad key", _botocore("InvalidAccessKeyId", 403), "28000", "AWS credentials"),
        ("unknown bucket", _botocore("NoSuchBucket", 404), "58P01", "bucket name"),
        ("access denied", _botocore("AccessDenied", 403), "42501", "s3:PutObject"),
        ("bad endpoint", be.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
         "58030", "AWS_ENDPOINT_URL"),
        ("bad endpoint setting", be.InvalidEndpointConfigurationError(msg="bad"), "22023",
         "AWS_ENDPOINT_URL"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_s3_errors_name_the_store_a_sqlstate_and_what_to_do(case: int) -> None:
    name, exc, sqlstate, says = _s3_cases()[case]
    err = storage.storage_error(s3._translate(exc), "cannot write s3://bkt/t/1/1.csv")
    text = str(err)
    assert "s3://bkt" in text and f"[{sqlstate}]" in text and err.hint, (name, text)
    assert says in err.hint, (name, text)


@pytest.mark.parametrize(("exc", "sqlstate"), [
    (PermissionError(errno.EACCES, "Permission denied"), "42501"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "58P01"),
    (OSError(errno.ENOSPC, "No space left on device"), "58030"),
    (OSError(errno.EROFS, "Read-only file system"), "42501"),
])
def test_file_errors_have_a_sqlstate_and_a_hint(exc: OSError, sqlstate: str) -> None:
    err = storage.storage_error(exc, "cannot write file:///srv/x/1.csv")
    assert f"[{sqlstate}]" in str(err) and err.hint, str(err)


def test_every_store_error_has_a_sqlstate_and_a_hint() -> None:
    """obstore's own errors (memory://, az://, gs:// configuration) and the
    worker's own StorageErrors alike."""
    import obstore
    from obstore.store import MemoryStore

    with pytest.raises(Exception) as missing:
        obstore.get(MemoryStore(), "nope")
    errors = [storage.storage_error(missing.value, "cannot read memory:///nope"),
              storage.StorageError("cannot finish s3://b/k: gone", retryable=True),
              storage.StorageError("cannot write s3://b/k: refused", retryable=False)]
    with pytest.raises(storage.StorageError) as az:
        storage.store_for(storage.parse("az://container/x"))
    errors.append(az.value)
    with pytest.raises(storage.StorageError) as https:
        storage.store_for(storage.parse("https://example.com/x"))
    errors.append(https.value)
    for err in errors:
        assert SQLSTATE.search(str(err)) and err.hint, str(err)
    assert "[28000]" in str(az.value) and "AZURE_STORAGE_ACCOUNT_NAME" in str(az.value)
    assert "[22023]" in str(https.value)


def test_a_job_that_storage_fails_records_the_sqlstate_and_the_hint(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """The job's error (pgjobs.jobs.error) is the one line every other worker
    error is: message [SQLSTATE] (hint: ...)."""
    make_items(conn)
    conn.execute("SELECT pgjobs.allow_storage('az://container/')")
    job_id = submit_export(conn, "1", {}, {"destination": "az://container/exports"})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "failed", outcome
    error = conn.execute("SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert error is not None
    assert "az://container" in error[0] and "[28000]" in error[0], error
    assert "(hint: give the worker an Azure storage account" in error[0], error


def test_an_error_that_carries_another_says_its_sqlstate_and_hint_once() -> None:
    """A parallel export's failure quotes a part's recorded error (message
    [SQLSTATE] (hint: ...)): the job's error names them once, the part's."""
    part = storage.storage_error(PermissionError(errno.EACCES, "Permission denied"),
                                 "cannot write file:///srv/x/1.csv")
    err = storage.StorageError(f"part 1 of 4 failed: part 1: {part}", retryable=False)
    assert str(err) == f"part 1 of 4 failed: part 1: {part}"
    assert err.sqlstate == "42501" and err.hint == part.hint
    assert len(SQLSTATE.findall(str(err))) == 1 and str(err).count("(hint: ") == 1


@pytest.mark.parametrize("path", ["/data/out", "/data/out/", "./out", "out/sub", "~/out",
                                  " /data/out "])
def test_a_local_folder_given_as_storage_names_its_file_uri(path: str) -> None:
    """`--to /data/out` (an import's SOURCE takes a local path) got the list of
    schemes; the hint now gives the URI to write, and that URI is taken."""
    with pytest.raises(storage.InvalidInput) as caught:
        storage.parse(path)
    hint = caught.value.hint or ""
    folder = os.path.abspath(os.path.expanduser(path.strip()))
    assert hint.endswith(f"file://{folder}"), hint
    assert storage.parse(f"file://{folder}").path.rstrip("/") == folder.rstrip("/")
