"""What the README promises a newcomer is what CI runs."""

from __future__ import annotations

import re

from tests.harness.runner import REPO


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```console\n(.*?)```", readme, re.S)
    assert block, "the README opens with a console block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_opens_with_the_main_job_and_the_test_command():
    main_job, tests = _readme_commands()[:2]
    assert main_job.endswith("python3 -m tox -e e2e")
    assert tests.endswith("python3 -m tox")


def test_ci_runs_exactly_the_readmes_test_command():
    tests = _readme_commands()[1]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == [tests]


def test_tox_passes_what_kubeconfig_credential_plugins_read():
    """`aws eks get-token`, gke-gcloud-auth-plugin and kubelogin read these; tox drops every
    variable it is not told to pass, so an EKS/GKE/AKS kubeconfig would fail in `tox -e e2e`."""
    tox = (REPO / "tox.ini").read_text()
    passed = re.search(r"pass_env =\n((?:    .*\n)+)", tox)
    assert passed
    names = {line.split("#")[0].strip() for line in passed.group(1).splitlines()}
    assert {"KUBECONFIG", "USER", "AWS_*", "CLOUDSDK_*", "GOOGLE_*", "AZURE_*"} <= names
