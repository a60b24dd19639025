"""Take the screenshots of the web page the README shows, with the headless browser the
tests use (Debian's chromium through Playwright), against a docqa on loopback that indexes
this repository's own docs.

.venv/bin/python scripts/web_screenshots.py            # docs/web-page.png, docs/web-page-phone.png
.venv/bin/python scripts/web_screenshots.py --out DIR  # somewhere else
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docqa  # noqa: E402, F401 - the offline switches, before any model library loads

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SAMPLE = ["README.md", "docs/architecture.md", "docs/evals.md", "docs/airflow.md"]
QUESTION = "What happens when a file cannot be indexed?"


def serve(data_dir: Path) -> tuple[str, object]:
    import uvicorn

    from api.main import create_app
    from docqa.settings import load_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(load_settings(data_dir=data_dir))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        url, server = serve(Path(tmp) / "data")
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(Path(tmp) / "profile"),
                executable_path=args.chromium,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 980},
            )
            page = browser.new_page()
            page.goto(url)
            page.locator("#app").wait_for(state="visible")
            page.set_input_files("#file-input", [str(ROOT / f) for f in SAMPLE])
            for name in SAMPLE:
                row = page.locator("#doc-table tbody tr", has_text=Path(name).name)
                row.get_by_text("indexed", exact=True).wait_for(timeout=300_000)
            question = page.get_by_role("textbox", name="Question")
            question.fill(QUESTION)
            question.press("Enter")
            card = page.locator("#answers article[aria-busy=false]").first
            card.wait_for(timeout=120_000)
            card.get_by_role("button", name="Helpful", exact=True).click()
            card.get_by_text("Timings").click()
            page.locator("#question").blur()
            args.out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out / "web-page.png"))
            card.locator("a.cite").first.click()
            page.locator("#passage-dialog mark").first.wait_for()
            page.screenshot(path=str(args.out / "web-page-passage.png"))
            page.keyboard.press("Escape")
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(args.out / "web-page-phone.png"), full_page=True)
            browser.close()
        server.should_exit = True  # type: ignore[attr-defined]
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
