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
