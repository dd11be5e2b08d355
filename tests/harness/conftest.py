"""Fixtures of the harness's self-tests: a separately started local stack for the live target."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.local_stack import LocalStack
from fixtures.secrets import generate_daskhub_secrets
from fixtures.values import VALUES_DIR, check_values, load_values_file
from tests.harness.renders import RENDERS


def pytest_configure(config: pytest.Config) -> None:
    """The self-tests read the chart's real objects from the workspace (never a copy): without
    them, one sentence instead of a collection traceback."""
    if not (RENDERS / "index.json").is_file():
        raise pytest.UsageError(
            f"no chart renders at {RENDERS}: the self-tests read them from the workspace's "
            "shared/ folder; run them from a checkout that sits beside shared/"
        )


@pytest.fixture(scope="session")
def running_stack() -> Iterator[LocalStack]:
    """A healthy local DaskHub started by the test process itself, as an operator's would be."""
    values = check_values(
        [load_values_file(VALUES_DIR / "daskhub-e2e.yaml"), generate_daskhub_secrets()]
    )
    workdir = Path(tempfile.mkdtemp(prefix="daskhub-e2e-selftest-"))
    stack = LocalStack(workdir, values, workdir / "logs", uuid.uuid4().hex)
    try:
        yield stack.start()
    finally:
        stack.stop()
        stack.remove_workdir()
