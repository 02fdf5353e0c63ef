"""`pgjobs worker --storage-retry` (env PGJOBS_STORAGE_RETRY): a bad value is a
usage error with a hint, before the worker connects anywhere."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main

# Nothing listens here: a worker that got past its options would wait for it.
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("value", ["banana", "-5s", "", "5x", "1 fortnight"])
def test_bad_storage_retry_is_a_usage_error(value: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "worker", "--once",
                                       "--storage-retry", value])
    assert result.exit_code == 2, result.output
    assert f"invalid --storage-retry '{value}'" in result.stderr
    assert "hint: use e.g. 30s" in result.stderr


def test_bad_storage_retry_from_the_environment_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "worker", "--once"],
                                env={"PGJOBS_STORAGE_RETRY": "nope"})
    assert result.exit_code == 2, result.output
    assert "invalid --storage-retry 'nope'" in result.stderr
