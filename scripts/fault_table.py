"""Render the fault suite's results (e2e-artifacts/fault-suite.json, written by
`tox -e faults` in this checkout) as the README's fault table, between its fault-table
markers; paths inside the checkout are shown relative to it.

    python scripts/fault_table.py            # rewrite the table in README.md
    python scripts/fault_table.py --print    # only print it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "e2e-artifacts" / "fault-suite.json"
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"


def table(results: list[dict]) -> str:
    lines = [
        "| fault | expected stage | message | seconds to verdict (bound) |",
        "|---|---|---|---|",
    ]
    for row in results:
        stage = row["stage"] or "none (stays green)"
        bound = row["fraction"] * row["deadline"]
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.1f} (≤ {bound:.0f})"
        # A path inside the checkout the suite ran in is shown relative to it.
        message = str(row["message"]).replace(f"{REPO}/", "").replace("|", "\\|")
        args = " ".join(row.get("args") or ())
        fault = f"`{row['fault']}`" + (f" with `{args}`" if args else "")
        lines.append(f"| {fault} | {stage} | {message} | {seconds} |")
    return "\n".join(lines)


def main() -> None:
    if not RESULTS.exists():
        sys.exit(f"{RESULTS} is missing: run `tox -e faults` first")
    rendered = table(json.loads(RESULTS.read_text()))
    if "--print" in sys.argv:
        print(rendered)
        return
    readme = REPO / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{rendered}\n{END}{tail}")
    print(f"README.md fault table: {rendered.count(chr(10)) - 1} rows")


if __name__ == "__main__":
    main()
