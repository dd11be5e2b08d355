"""The helm command layer, driven against a stand-in `helm` first on PATH that records its argv
(and the mode of every values file it is given) and answers like helm does."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from fixtures.errors import StageFailure, UsageError
from fixtures.helm import Helm
from fixtures.kube_target import helm_repositories_in
from fixtures.secrets import generate_daskhub_secrets

STAND_IN = """#!{python}
import json, os, sys
from pathlib import Path
log = Path(os.environ["FAKE_HELM_LOG"])
state = Path(os.environ["FAKE_HELM_STATE"])
args = sys.argv[1:]
files = [args[i + 1] for i, a in enumerate(args) if a == "--values"]
with log.open("a") as out:
    out.write(json.dumps({{"argv": args, "modes": {{f: oct(os.stat(f).st_mode & 0o777)
                                                    for f in files}}}}) + "\\n")
status = state.read_text().strip() if state.exists() else ""
if args[0] == "status":
    if not status:
        sys.exit("Error: release: not found")
    print(json.dumps({{"name": args[1], "info": {{"status": status}}}}))
elif args[0] == "upgrade" and os.environ.get("FAKE_HELM_FAIL"):
    sys.exit("Error: UPGRADE FAILED: values don't meet the specifications of the schema(s)")
elif args[0] == "upgrade":
    state.write_text("deployed")
elif args[0] in ("uninstall",):
    state.write_text("")
elif args[0] == "rollback":
    state.write_text("deployed")
elif args[0] == "lint" and os.environ.get("FAKE_HELM_LINT_FINDINGS"):
    # helm 3.17 prints the findings on stdout, only the count on stderr
    print("==> Linting " + args[2])
    print("[ERROR] values.yaml: - jupyterhub: Additional property hubb is not allowed")
    print()
    print("Error: 1 chart(s) linted, 1 chart(s) failed", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stand-in helm first on PATH; returns a reader of the calls it got."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helm = bin_dir / "helm"
    helm.write_text(STAND_IN.format(python=sys.executable))
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    log, state = tmp_path / "helm-calls.jsonl", tmp_path / "helm-state"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HELM_LOG", str(log))
    monkeypatch.setenv("FAKE_HELM_STATE", str(state))

    class Calls:
        state_file = state

        def __call__(self) -> list[dict]:
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

    return Calls()


def test_install_is_upgrade_install_without_wait_with_a_0600_secrets_file_deleted_after(
    fake_helm, tmp_path: Path
):
    harness, user = tmp_path / "harness.yaml", tmp_path / "user.yaml"
    harness.write_text("{}\n")
    user.write_text("{}\n")
    secrets = generate_daskhub_secrets()
    Helm("dhub", "dhub").install(secrets, tmp_path, before=[harness], after=[user])

    (call,) = fake_helm()
    argv = call["argv"]
    assert argv[:3] == ["upgrade", "--install", "dhub"]
    assert argv[3:5] == ["dask/daskhub", "--version"] and argv[5] == "2024.1.1"
    assert "--wait" not in argv
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "--values"]
    assert files[0] == str(harness) and files[-1] == str(user)  # the user's values win
    secrets_file = files[1]
    assert call["modes"][secrets_file] == "0o600"
    assert not Path(secrets_file).exists()
    flat = json.dumps(argv)
    token = secrets["jupyterhub"]["proxy"]["secretToken"]
    assert token not in flat


def test_a_failing_install_says_why_and_still_deletes_the_secrets_file(
    fake_helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_HELM_FAIL", "1")
    with pytest.raises(StageFailure) as failed:
        Helm("dhub", "dhub").install(generate_daskhub_secrets(), tmp_path)
    assert "helm upgrade exited 1" in str(failed.value)
    assert "values don't meet the specifications" in str(failed.value)
    assert list(tmp_path.glob("daskhub-e2e-secrets.yaml")) == []


@pytest.mark.parametrize(
    ("left", "done", "command"),
    [
        ("pending-install", "removed release dhub left pending-install", "uninstall"),
        ("pending-upgrade", "rolled back release dhub left pending-upgrade", "rollback"),
    ],
)
def test_a_release_an_interrupted_run_left_pending_is_cleared_first(fake_helm, left, done, command):
    fake_helm.state_file.write_text(left)
    assert Helm("dhub", "dhub").recover_interrupted() == done
    assert [c["argv"][0] for c in fake_helm()] == ["status", command]


def test_a_deployed_or_absent_release_is_left_alone(fake_helm):
    assert Helm("dhub", "dhub").recover_interrupted() is None
    fake_helm.state_file.write_text("deployed")
    assert Helm("dhub", "dhub").recover_interrupted() is None
    assert [c["argv"][0] for c in fake_helm()] == ["status", "status"]


def test_a_local_chart_is_linted_strictly_and_templated(fake_helm, tmp_path: Path):
    chart = tmp_path / "daskhub"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(DASKHUB_CHART_YAML)
    values = tmp_path / "v.yaml"
    values.write_text("{}\n")
    helm = Helm("dhub", "dhub", chart=str(chart))
    helm.prepare_chart()
    helm.lint([values])
    calls = [c["argv"] for c in fake_helm()]
    assert calls[:2] == [
        ["repo", "add", "jupyterhub", "https://jupyterhub.github.io/helm-chart/", "--force-update"],
        ["repo", "add", "dask-gateway", "https://helm.dask.org/", "--force-update"],
    ]
    assert calls[2] == ["dependency", "update", str(chart)]  # build fails on a stale lock
    assert calls[3] == ["lint", "--strict", str(chart), "--values", str(values)]
    assert calls[4][:2] == ["template", "dhub"] and "--version" not in calls[4]


def test_a_failing_lint_says_its_findings(fake_helm, tmp_path: Path, monkeypatch):
    chart = tmp_path / "daskhub"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(DASKHUB_CHART_YAML)
    monkeypatch.setenv("FAKE_HELM_LINT_FINDINGS", "1")
    with pytest.raises(StageFailure) as failed:
        Helm("dhub", "dhub", chart=str(chart)).lint([])
    assert "[ERROR] values.yaml: - jupyterhub: Additional property hubb" in failed.value.seen
    assert "1 chart(s) failed" in failed.value.evidence


#: The dependencies of daskhub's Chart.yaml on main (CHART-FACTS.md): no `condition:`.
DASKHUB_CHART_YAML = """\
apiVersion: v2
name: daskhub
version: 0.0.1-set.by.chartpress
appVersion: jh4.4.0-dg2026.3.0
dependencies:
  - name: jupyterhub
    version: "4.4.0"
    repository: https://jupyterhub.github.io/helm-chart/
  - name: dask-gateway
    version: "2026.3.0"
    repository: https://helm.dask.org/
"""


def test_no_helm_on_path_is_one_line_saying_what_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match=r"^`helm` is not on PATH; install helm >= 3.7"):
        Helm("dhub", "dhub")


def test_the_run_s_helm_repositories_are_set_for_the_run_and_restored_after(
    monkeypatch, tmp_path: Path
):
    """helm's repository variables point into the run's folder while it runs; the user's own
    value, or its absence, is back afterwards (also when the run raised)."""
    monkeypatch.setenv("HELM_REPOSITORY_CONFIG", "/home/user/.config/helm/repositories.yaml")
    monkeypatch.delenv("HELM_REPOSITORY_CACHE", raising=False)
    with pytest.raises(KeyboardInterrupt), helm_repositories_in(tmp_path / "helm"):
        assert os.environ["HELM_REPOSITORY_CONFIG"] == str(tmp_path / "helm/repositories.yaml")
        assert os.environ["HELM_REPOSITORY_CACHE"] == str(tmp_path / "helm/repository-cache")
        raise KeyboardInterrupt
    assert os.environ["HELM_REPOSITORY_CONFIG"] == "/home/user/.config/helm/repositories.yaml"
    assert "HELM_REPOSITORY_CACHE" not in os.environ
