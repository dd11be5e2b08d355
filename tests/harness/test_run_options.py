"""--keep, --cleanup, --strict-security and the GitHub job summary, on the real local stack."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.harness.runner import run_harness, temp_dir_of

QUICK = ["-k", "not user_server and not isolation"]


def test_keep_leaves_the_stack_running_and_cleanup_removes_it(tmp_path: Path):
    kept = run_harness(["--target", "local", "--keep", *QUICK], tmp_path / "kept")
    try:
        assert kept.returncode == 0, kept.stdout[-3000:]
        assert "daskhub-e2e: left in place:" in kept.stdout
        hub = re.search(r"- hub: (http://127\.0\.0\.1:\d+/)", kept.stdout)
        assert hub, kept.stdout[-2000:]
        assert requests.get(hub.group(1) + "hub/api/", timeout=10).status_code == 200
        assert kept.leftovers(), "--keep must leave the stack's processes running"
        assert "remove with --cleanup" in (kept.artifacts / "report.md").read_text()
    finally:
        cleanup = run_harness(
            ["--target", "local", "--cleanup"],
            tmp_path / "cleanup",
            env={"TMPDIR": str(temp_dir_of(tmp_path / "kept"))},
        )
    assert cleanup.returncode == 0, cleanup.stdout[-2000:] + cleanup.stderr[-2000:]
    assert "cleanup done" in cleanup.stdout + cleanup.stderr
    assert kept.leftovers() == []
    assert kept.files_left() == []


def test_strict_security_turns_a_security_finding_red(tmp_path: Path):
    run = run_harness(["--target", "local", "--strict-security", "-x", *QUICK], tmp_path / "a")
    assert run.returncode == 1
    failure = run.first_failure
    assert failure is not None and failure["stage"] == "dashboard"
    assert "dashboards are readable anonymously" in failure["message"]
    assert run.leftovers() == []


def test_the_report_goes_to_the_github_job_summary(tmp_path: Path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier steps\n")
    run = run_harness(
        ["--target", "local", "-k", "discovery"],
        tmp_path / "a",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert run.returncode == 0, run.stdout[-2000:]
    text = summary.read_text()
    assert text.startswith("earlier steps\n# daskhub-e2e report: target `local`")
    assert text.count("# daskhub-e2e report") == 1
    assert (run.artifacts / "timeline.svg").read_text().lstrip().startswith("<?xml")
