"""What the README promises a newcomer is what CI runs."""

from __future__ import annotations

import re

import yaml

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


def _e2e_workflow() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "e2e.yaml").read_text())


def test_the_kind_gate_checks_out_the_harness_not_its_caller():
    """In a called workflow `github` is the caller's: checkout without `repository:` would
    fetch the chart's repository, where no harness is."""
    workflow = _e2e_workflow()
    called = workflow[True]["workflow_call"]["inputs"]  # YAML 1.1 reads `on:` as True
    assert called["harness-repository"]["required"] is True
    steps = workflow["jobs"]["kind"]["steps"]
    first = steps[0]
    assert first["uses"].startswith("actions/checkout@")
    assert "inputs.harness-repository" in first["with"]["repository"]
    assert "inputs.harness-ref" in first["with"]["ref"]


def test_the_kind_gate_keeps_its_diagnostics_when_cancelled_by_its_timeout():
    steps = _e2e_workflow()["jobs"]["kind"]["steps"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "failure() || cancelled()"


def test_the_smoke_workflow_runs_live_on_a_schedule_with_the_token_in_env_only():
    """The token reaches the run through `env:` alone (never in a command line or a template
    inside `run:`), the URL from a repository variable, the metrics file is written and the
    artifacts are kept whatever the outcome."""
    text = (REPO / ".github" / "workflows" / "smoke.yaml").read_text()
    workflow = yaml.safe_load(text)
    on = workflow[True]
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    job = workflow["jobs"]["live"]
    assert job["if"] == "vars.DASKHUB_E2E_HUB_URL != ''"
    assert job["environment"] == "live-smoke"  # the secret is the environment's
    run = next(s for s in job["steps"] if "run" in s)
    assert run["env"]["DASKHUB_E2E_HUB_TOKEN"] == "${{ secrets.DASKHUB_E2E_HUB_TOKEN }}"
    assert run["env"]["DASKHUB_E2E_HUB_URL"] == "${{ vars.DASKHUB_E2E_HUB_URL }}"
    assert "${{" not in run["run"]
    assert "--target live" in run["run"] and "--metrics e2e-artifacts/" in run["run"]
    assert text.count("secrets.") == 1
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload"))
    assert upload["if"] == "always()"
