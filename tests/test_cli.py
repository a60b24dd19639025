"""The `docqa` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import shared_path
from tests.documents import write_corpus, write_malformed

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def docqa(data: Path, *args: str):
    return runner.invoke(app, ["--data-dir", str(data), *args], catch_exceptions=False)


@pytest.fixture
def folders(tmp_path):
    write_corpus(tmp_path / "docs")
    write_malformed(tmp_path / "bad")
    return tmp_path


def test_ingest_summarises_and_exits_1_when_some_files_fail(folders):
    data = folders / "data"
    result = docqa(data, "ingest", str(folders / "docs"), str(folders / "bad"))
    assert result.exit_code == 1
    assert "9 added, 0 updated, 0 unchanged, 8 failed" in result.stdout
    assert "password_protected" in result.stdout and "unsupported_type" in result.stdout

    again = docqa(data, "ingest", str(folders / "docs"))
    assert again.exit_code == 0
    assert "0 added, 0 updated, 9 unchanged, 0 failed" in again.stdout


def test_ingest_json_lists_every_file(folders):
    result = docqa(folders / "data", "ingest", "--json", str(folders / "docs" / "notes.md"))
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert rows[0]["outcome"] == "added" and rows[0]["source"].endswith("notes.md")


def test_ingest_of_a_missing_path_is_an_error(tmp_path):
    result = docqa(tmp_path / "data", "ingest", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr


def test_ask_prints_an_answer_with_citations_and_json_matches_the_api(folders):
    data = folders / "data"
    docqa(data, "ingest", str(folders / "docs"))
    result = docqa(data, "ask", "How many days of paid holiday do employees get?")
    assert result.exit_code == 0
    assert "27 days" in result.stdout and "handbook.docx" in result.stdout
    body = json.loads(
        docqa(data, "ask", "--json", "--top-k", "3", "Where is the Copenhagen office?").stdout
    )
    assert set(body) >= {"answer", "found", "citations", "timings_ms"}
    assert body["found"] and body["citations"][0]["source"].endswith("notes.md")


def test_documents_list_and_rm(folders):
    data = folders / "data"
    docqa(data, "ingest", str(folders / "docs" / "notes.md"))
    listed = json.loads(docqa(data, "documents", "list", "--json").stdout)
    assert len(listed) == 1 and listed[0]["status"] == "indexed"
    removed = docqa(data, "documents", "rm", listed[0]["document_id"])
    assert removed.exit_code == 0 and "removed" in removed.stdout
    assert json.loads(docqa(data, "documents", "list", "--json").stdout) == []
    missing = docqa(data, "documents", "rm", "doc_nope")
    assert missing.exit_code == 2 and "no document" in missing.stderr


def test_invalid_setting_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCQA_CHUNKING__CHUNK_TOKENS", "lots")
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "documents", "list"])
    assert result.exit_code != 0
    assert "DOCQA_CHUNKING__CHUNK_TOKENS" in str(result.exception) + result.stderr


HOLD_LOCK = """
import sys, time
from pathlib import Path
from docqa.locking import writer_lock
from docqa.settings import load_settings
with writer_lock(load_settings(data_dir=Path(sys.argv[1])), holder="docqa serve"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_writer_on_an_embedded_index_gets_a_clear_error(folders):
    data = folders / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        result = docqa(data, "ingest", str(folders / "docs" / "notes.md"))
        assert result.exit_code == 2
        assert "docqa serve (pid" in result.stderr and "POST /v1/documents" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    assert docqa(data, "ingest", str(folders / "docs" / "notes.md")).exit_code == 0


def test_installed_entry_point_runs():
    exe = Path(sys.executable).parent / "docqa"
    if not exe.exists():
        pytest.skip("docqa is not installed in this environment (run make install)")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ingest" in out.stdout and "ask" in out.stdout


@pytest.mark.slow
def test_shared_formats_ingest_then_reingest_reports_nothing_new(tmp_path):
    formats = shared_path("corpus", "formats")
    first = docqa(tmp_path / "data", "ingest", str(formats))
    assert first.exit_code == 0, first.stdout
    assert "30 added" in first.stdout and "0 failed" in first.stdout
    second = docqa(tmp_path / "data", "ingest", str(formats))
    assert "0 added, 0 updated, 30 unchanged, 0 failed" in second.stdout
    answer = json.loads(docqa(tmp_path / "data", "ask", "--json", "What is LayoutParser?").stdout)
    assert answer["found"]
    assert any(c["source"].endswith(".pdf") and c["page"] for c in answer["citations"])
