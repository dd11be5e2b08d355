"""Flake rate and cleanup under repetition: run the healthy local target N times in a row.

Reports the pass count, each stage's median and max seconds, and after every run any process
of that run still alive and anything left in its temp folder. With ``--keep`` each run is
``--keep -k "not user_server and not isolation"`` followed by ``--cleanup``, and what counts
as left over is what the cleanup did not remove. A run that does not end within its timeout
counts as a hang.

    python scripts/flake_rate.py [-n 20] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.runner import run_harness, temp_dir_of

KEEP = ["--keep", "-k", "not user_server and not isolation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--keep", action="store_true", help="--keep runs, each then cleaned up")
    args = parser.parse_args()
    hangs = 0
    # Not named daskhub-e2e-*: `--cleanup` removes those, and this folder is the results.
    folder = Path(tempfile.mkdtemp(prefix="flake-rate-"))
    seconds: dict[str, list[float]] = defaultdict(list)
    passed = 0
    for index in range(args.n):
        artifacts = folder / f"run-{index}"
        try:
            run = run_harness(["--target", "local", *(KEEP if args.keep else [])], artifacts)
        except subprocess.TimeoutExpired:
            hangs += 1
            print(f"run {index + 1}/{args.n}: HUNG", flush=True)
            continue
        finally:
            if args.keep:
                run_harness(
                    ["--target", "local", "--cleanup"],
                    folder / f"cleanup-{index}",
                    env={"TMPDIR": str(temp_dir_of(artifacts))},
                )
        ok = run.returncode == 0
        passed += ok
        if not (artifacts / "stages.json").is_file():
            print(f"run {index + 1}/{args.n}: FAILED before any stage: {run.stdout[-500:]}")
            continue
        for stage in run.stages:
            seconds[stage["stage"]].append(stage["seconds"])
        left = run.leftovers() + run.files_left()
        failed = run.first_failure
        why = f" first failure {failed['stage']}: {failed['message'][:200]}" if failed else ""
        print(
            f"run {index + 1}/{args.n}: {'passed' if ok else 'FAILED'}; leftovers: "
            f"{left or 'none'}{why}",
            flush=True,
        )
    print(f"\n{passed}/{args.n} runs passed, {hangs} hung")
    for stage, values in seconds.items():
        print(f"{stage:16s} median {statistics.median(values):6.2f}s  max {max(values):6.2f}s")
    print(f"artifacts: {folder}")
    sys.exit(0 if passed == args.n else 1)


if __name__ == "__main__":
    main()
