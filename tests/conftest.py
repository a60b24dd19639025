"""Fixtures shared by every stage's tests: settings in a temporary data folder, one
embedding model per session (loading it is the slow part), the shared corpus when present,
and the real Redis / PostgreSQL services when reachable."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import docqa  # noqa: F401 - sets the offline switches before any model library loads
from app import Docqa
from docqa.settings import Settings, load_settings
from tests.fakes.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCQA_SHARED_DIR", ROOT.parent / "shared"))

# Tests must never depend on the developer's own environment.
for _key in [k for k in os.environ if k.startswith("DOCQA_")]:
    if _key != "DOCQA_SHARED_DIR" and not _key.startswith("DOCQA_TEST_"):
        del os.environ[_key]


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip saying it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test corpus is not next to this checkout)")
    return path


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The default embedding backend, loaded once for the whole session."""
    from app.container import build_embedder

    emb = build_embedder(load_settings())
    emb.embed_query("loaded before the first test, not during it")
    return emb


@pytest.fixture(scope="session")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's parser worker process (the one every default Docqa of this process
    shares), started here: its start imports the parsers, which no test should time."""
    from ingestion.budget import ParseBudget
    from ingestion.isolation import shared_parser

    conf = load_settings().ingestion
    worker = shared_parser(ParseBudget.of(conf), pdf_strategy=conf.pdf_strategy)
    warm = tmp_path_factory.mktemp("parser") / "warm.txt"
    warm.write_text("Started before the first test that parses, not during it.")
    worker.parse(warm, source="warm.txt")
    yield worker
    worker.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        return load_settings(**overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def make_docqa(
    make_settings: Callable[..., Settings], embedder: Any, parser: Any
) -> Callable[..., Docqa]:
    """A Docqa on a fresh data folder that reuses the session's embedding model (and, by
    default settings, the session's parser worker: `parser` started it)."""

    def make(settings: Settings | None = None, **overrides: Any) -> Docqa:
        settings = settings or make_settings(**overrides)
        same_model = settings.embedding == load_settings().embedding
        return Docqa(settings, embedder=embedder if same_model else None)

    return make


@pytest.fixture
def dq(make_docqa: Callable[..., Docqa]) -> Docqa:
    return make_docqa()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _missing_service(message: str) -> None:
    """Skip a test whose service is absent, or fail it where the services are required
    (.ci/run sets DOCQA_TEST_REQUIRE_SERVICES=1: CI must not go green by skipping)."""
    if os.environ.get("DOCQA_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (DOCQA_TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("DOCQA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if not _port_open("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])):
        _missing_service(f"Redis is not reachable at {url}; scripts/ensure-services.sh starts it")
    return url


# The role and database scripts/ensure-services.sh creates.
TEST_PG_URL = "postgresql+psycopg://docqa_test:docqa_test@127.0.0.1:5432/docqa_test"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = os.environ.get("DOCQA_TEST_PG_URL", TEST_PG_URL)
    if not _port_open("127.0.0.1", 5432):
        _missing_service(
            f"PostgreSQL is not reachable for {url}; scripts/ensure-services.sh starts it"
        )
    from sqlalchemy import create_engine, text

    try:
        with create_engine(url).connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001
        _missing_service(
            f"cannot log in to PostgreSQL at {url} ({exc}); scripts/ensure-services.sh "
            "creates the docqa_test role and database"
        )
    yield url


def sync_with(dq: Docqa, source: Any, *, max_delete_share: float | None = None) -> Any:
    """`docqa sync` in this process: plan, ingest and prune `source` through `dq`'s parts."""
    from ingestion.sync import sync_source

    share = dq.settings.sync.max_delete_share if max_delete_share is None else max_delete_share
    return sync_source(dq.indexer(), source, max_delete_share=share)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server on loopback (`chroma run`), for the session."""
    exe = shutil.which("chroma") or str(ROOT / ".venv" / "bin" / "chroma")
    if not Path(exe).exists():
        pytest.skip("the chroma CLI (chromadb package) is not installed")
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited with {proc.returncode}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma run did not start listening within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@dataclass
class PgDatabase:
    url: str
    name: str
    admin: Any  # an AUTOCOMMIT engine on the server, for what a test does to the database


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[PgDatabase]:
    """A PostgreSQL database of the test's own, dropped afterwards (with docqa's pooled
    engine for it)."""
    from sqlalchemy import create_engine, text

    from docqa.db import _engines

    name = f"docqa_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield PgDatabase(url, name, admin)
    finally:
        engine = _engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
