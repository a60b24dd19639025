"""A real browser for the web page: Debian's chromium (scripts/ensure-services.sh installs
it), driven by Playwright with that executable; Playwright's own browser download is never
used. Without the browser the tests skip, or fail under DOCQA_TEST_REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LiveServer, start_server  # noqa: F401 - the fixture, shared
from tests.conftest import _missing_service

CHROMIUM = os.environ.get("DOCQA_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium opens connections to Google's services
# at start, which are refused here (and are nothing a test should make).
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
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        _missing_service(
            f"no Chromium at {CHROMIUM}: scripts/ensure-services.sh installs Debian's chromium "
            "(or set DOCQA_TEST_CHROMIUM)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing_service("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    """A browser with a new, empty profile, its page at desktop width."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport=DESKTOP,
    )
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()
