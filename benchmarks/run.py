"""`make bench`: speed, memory and quality, measured (never asserted in tests).

    .venv/bin/python -m benchmarks.run [--quick] [--only ingest,ask,...] [--record]

Every section runs on its own (`--only`), most in child processes so one section's memory
and warm caches do not colour the next. Prints one Markdown table per section, headed by
the date, the machine and the command; writes benchmarks/results/bench-<timestamp>.{json,md}
and, with --record, appends the Markdown to benchmarks/RESULTS.md. Uses ../shared/corpus
and ../shared/benchmarks/covidqa-dev.json when present (DOCQA_SHARED_DIR elsewhere).

A section is a function `(quick) -> {"markdown": str, ...}` registered in SECTIONS; a
benchmark module with its own `main()` is registered with `module_section("benchmarks.x")`
(run as `python -m benchmarks.x [--quick]`, its stdout becomes the section's text).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RECORD = ROOT / "benchmarks" / "RESULTS.md"

Section = Callable[[bool], dict[str, Any]]


def module_section(
    module: str, args: Sequence[str] = (), quick_args: Sequence[str] = ("--quick",)
) -> Section:
    """A section that runs `python -m <module> *args [*quick_args]` and keeps what it prints
    (e.g. `module_section("benchmarks.quality", ["--answer", "configured"], ["--sets",
    "covidqa-dev"])`)."""

    def section(quick: bool) -> dict[str, Any]:
        cmd = [sys.executable, "-m", module, *args, *(quick_args if quick else ())]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode:
            return {"markdown": f"`{' '.join(cmd[1:])}` failed:\n\n```\n{proc.stderr[-2000:]}\n```"}
        return {"markdown": proc.stdout.strip()}

    return section


def _ingest(quick: bool) -> dict[str, Any]:
    from benchmarks import ingest

    return ingest.run(quick)


def _keyword(quick: bool) -> dict[str, Any]:
    from benchmarks import keyword

    return keyword.run(quick)


def _serving(quick: bool) -> dict[str, Any]:
    from benchmarks import serving

    return serving.run(quick)


# name -> (title, section). Another benchmark joins with one line here.
def _quality(quick: bool) -> dict[str, Any]:
    """Retrieval and answer quality on every question set, as configured beside docqa as it
    was before issue 13 (--quick: COVID-QA only). benchmarks.quality prints a fixed-width
    table, kept as it is."""
    run = module_section(
        "benchmarks.quality",
        ["--variants", "before,configured", "--answer", "before,configured"],
        ["--sets", "covidqa-dev"],
    )
    out = run(quick)
    out["markdown"] = "```\n" + out["markdown"] + "\n```"
    return out


SECTIONS: dict[str, tuple[str, Section]] = {
    "ingest": ("Ingestion: docqa against the naive reference", _ingest),
    "keyword": ("Keyword index: a write until a search finds it", _keyword),
    "serving": ("Serving at 10k / 100k chunks: ask latency, writes, start-up, RSS", _serving),
    "retrieval": (
        "Retrieval quality on covidqa-dev",
        module_section("benchmarks.covidqa_retrieval", quick_args=["--limit=100"]),
    ),
    "quality": ("Retrieval and answer quality on every question set", _quality),
    "cache": ("Answer cache: hit rate and saved latency", module_section("benchmarks.cache")),
    "workers": (
        "Requests/s with uvicorn workers over a Chroma server",
        module_section("benchmarks.workers", quick_args=["--quick"]),
    ),
    "degraded": ("Time to a degraded answer", module_section("benchmarks.degraded")),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem_gb:.0f} GiB, Python {platform.python_version()}, "
        f"load average {load:.1f} at start"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller corpora, fewer questions")
    ap.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--record", action="store_true", help="append the tables to RESULTS.md")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")

    started = datetime.now(UTC)
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    header = f"## {started:%Y-%m-%d %H:%M} UTC\n\nMachine: {machine()}.\nCommand: `{command}`\n"
    print(header, flush=True)
    report: dict[str, Any] = {"when": started.isoformat(timespec="seconds"), "command": command}
    parts = [header]
    for name in names:
        title, section = SECTIONS[name]
        t0 = time.perf_counter()
        try:
            result = section(args.quick)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            result = {"markdown": f"failed: {type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - t0, 1)
        text = f"### {title} (`{name}`, {result['seconds']:.0f} s)\n\n{result['markdown']}\n"
        print(text, flush=True)
        parts.append(text)
        report[name] = result
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bench-{started:%Y%m%dT%H%M%S}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    stem.with_suffix(".md").write_text("\n".join(parts))
    if args.record:
        with RECORD.open("a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(parts))
    print(f"written to {stem}.json and .md" + (f", appended to {RECORD}" if args.record else ""))


if __name__ == "__main__":
    main()
