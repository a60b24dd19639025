"""Measuring in a child process: a benchmark runs `python -m benchmarks.<module> ...` so one
measurement's memory, warm caches and loaded models do not colour the next, and the child
prints its figures as one `RESULT {json}` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "RESULT "


def report(figures: dict[str, Any]) -> None:
    """In the child: hand the figures back to the parent."""
    print(PREFIX + json.dumps(figures))


def run_child(module: str, *args: str) -> dict[str, Any]:
    """In the parent: run the child and return what it reported.

    :raises RuntimeError: it failed or reported nothing (with the end of its stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith(PREFIX)), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(line[len(PREFIX) :]))
