"""Source sync: the index mirrors a folder (adds, edits and deletions), a second sync
changes nothing, and a source that cannot be listed, or would lose too much at once, has
nothing deleted."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from docqa.domain import DocumentStatus
from ingestion.sources import DirectorySource
from ingestion.sync import plan_sync, prune_deleted
from tests.conftest import sync_with
from tests.documents import HANDBOOK as TEXTS
from tests.documents import write_tree


def assert_mirrors(dq, root: Path) -> dict[str, str]:
    """The record store and both indexes hold exactly the files under `root`; returns each
    source's indexed text."""
    files = {str(p.resolve()) for p in root.rglob("*") if p.is_file()}
    records = {r.source: r for r in dq.records.list()}
    assert set(records) == files
    assert all(r.status == DocumentStatus.INDEXED for r in records.values())
    recorded = {c for r in records.values() for c in r.chunk_ids}
    index = dq.indexes.current()
    assert set(index.vectors.ids()) == set(index.lexical.ids()) == recorded
    texts: dict[str, str] = {}
    for chunk in index.vectors.get(sorted(recorded)):
        texts[chunk.source] = texts.get(chunk.source, "") + chunk.text
    return texts


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "handbook"
    write_tree(root, TEXTS)
    return root


def test_sync_mirrors_added_changed_and_deleted_files(dq, source):
    first = sync_with(dq, DirectorySource(source))
    assert (first.added, first.updated, first.unchanged, first.deleted) == (4, 0, 0, 0)
    assert_mirrors(dq, source)

    (source / "leave.md").write_text("# Leave\n\nStaff get 30 days of paid leave from 2026.\n")
    (source / "travel" / "hotels.txt").unlink()
    (source / "remote.txt").write_text("Remote work is allowed two days a week.\n")
    second = sync_with(dq, DirectorySource(source))

    assert (second.added, second.updated, second.unchanged, second.deleted) == (1, 1, 2, 1)
    assert second.ok and second.summary().endswith("1 deleted, 0 failed")
    texts = assert_mirrors(dq, source)
    leave = texts[str((source / "leave.md").resolve())]
    assert "30 days" in leave and "27 days" not in leave
    assert not any("140 euros" in t for t in texts.values())
    assert "140 euros" not in " ".join(
        h.chunk.text for h in dq.retriever.retrieve("hotel nights").hits
    )


def test_second_sync_changes_nothing(dq, source):
    sync_with(dq, DirectorySource(source))
    before = {r.document_id: (r.chunk_ids, r.indexed_at) for r in dq.records.list()}
    generation = dq.indexes.current().lexical.generation()

    again = sync_with(dq, DirectorySource(source))

    assert (again.added, again.updated, again.unchanged, again.deleted) == (0, 0, 4, 0)
    assert {r.document_id: (r.chunk_ids, r.indexed_at) for r in dq.records.list()} == before
    assert dq.indexes.current().lexical.generation() == generation


def test_a_touched_but_unchanged_file_is_not_reindexed(dq, source):
    sync_with(dq, DirectorySource(source))
    path = source / "security.md"
    os.utime(path, (1, 1))  # new mtime, same bytes: hashed again, found unchanged
    report = sync_with(dq, DirectorySource(source))
    assert (report.added, report.updated, report.unchanged) == (0, 0, 4)


@pytest.mark.parametrize("kind", ["missing", "a file", "emptied"])
def test_a_source_that_cannot_be_listed_or_looks_emptied_deletes_nothing(dq, source, kind):
    sync_with(dq, DirectorySource(source))
    chunks = dq.records.all_chunk_ids()
    if kind == "missing":  # an unmounted share
        for p in sorted(source.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        source.rmdir()
    elif kind == "a file":
        for p in sorted(source.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        source.rmdir()
        source.write_text("not a folder")
    else:  # the mount point is there but empty
        for p in sorted(source.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()

    report = sync_with(dq, DirectorySource(source))

    assert report.deleted == 0 and not report.ok
    if kind == "emptied":
        assert "4 of the 4 documents" in report.deletion_blocked
        assert "DOCQA_SYNC__MAX_DELETE_SHARE" in report.deletion_blocked
    else:
        assert "cannot be listed, nothing changed" in report.summary()
        assert report.deletion_blocked
    assert len(dq.records.list()) == 4 and dq.records.all_chunk_ids() == chunks
    index = dq.indexes.current()
    assert set(index.vectors.ids()) == set(index.lexical.ids()) == chunks


def test_guard_blocks_a_mass_deletion_until_raised(dq, source):
    sync_with(dq, DirectorySource(source))
    for rel in ("leave.md", "travel/trains.txt", "travel/hotels.txt"):
        (source / rel).unlink()

    blocked = sync_with(dq, DirectorySource(source))
    assert blocked.deleted == 0 and blocked.pending_deletions == 3
    assert "3 of the 4 documents" in blocked.deletion_blocked
    assert len(dq.records.list()) == 4

    allowed = sync_with(dq, DirectorySource(source), max_delete_share=1.0)
    assert allowed.deleted == 3 and allowed.deletion_blocked is None
    assert_mirrors(dq, source)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_an_unreadable_subfolder_blocks_deletions(dq, source):
    sync_with(dq, DirectorySource(source))
    (source / "leave.md").unlink()
    os.chmod(source / "travel", 0)
    try:
        report = sync_with(dq, DirectorySource(source))
    finally:
        os.chmod(source / "travel", 0o755)
    assert report.deleted == 0 and "incomplete" in report.deletion_blocked
    assert len(dq.records.list()) == 4


def test_only_the_sources_own_documents_are_pruned(dq, source, tmp_path):
    sibling = tmp_path / "handbook-old"  # shares a prefix with the source's path
    write_tree(sibling, {"old.txt": "Expense claims were once filed on paper forms.\n"})
    sync_with(dq, DirectorySource(sibling))
    sync_with(dq, DirectorySource(source))
    assert len(dq.records.list()) == 5
    (source / "security.md").unlink()

    report = sync_with(dq, DirectorySource(source))

    assert report.deleted == 1
    assert {Path(r.source).name for r in dq.records.list()} == {
        "old.txt",
        "leave.md",
        "trains.txt",
        "hotels.txt",
    }


def test_a_file_that_fails_is_recorded_and_retried_only_once_changed(dq, source):
    bad = source / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not really a pdf")
    first = sync_with(dq, DirectorySource(source))
    assert first.failed == 1 and first.failures[0]["source"] == str(bad.resolve())
    record = next(r for r in dq.records.list() if r.source == str(bad.resolve()))
    assert record.status == DocumentStatus.FAILED and record.reason

    again = sync_with(dq, DirectorySource(source))
    assert (again.failed, again.unchanged) == (0, 5)  # same bytes: not parsed again

    bad.unlink()
    (source / "broken.txt").write_text("Now a readable note about parking permits.\n")
    fixed = sync_with(dq, DirectorySource(source))
    assert fixed.added == 1 and fixed.deleted == 1 and fixed.failed == 0
    assert_mirrors(dq, source)


def test_a_file_back_before_the_prune_is_not_deleted(dq, source):
    sync_with(dq, DirectorySource(source))
    path = source / "security.md"
    saved = path.read_text()
    path.unlink()
    plan = plan_sync(
        dq.records,
        DirectorySource(source),
        fingerprint=dq.index_fingerprint(),
        max_delete_share=dq.settings.sync.max_delete_share,
    )
    assert [Path(d.source).name for d in plan.to_delete] == ["security.md"]
    path.write_text(saved)  # restored while the (hour-old) plan waited

    assert prune_deleted(dq.indexer(), DirectorySource(source), plan) == []
    assert len(dq.records.list()) == 4


def test_cli_sync_prints_counts_and_exit_status(source, tmp_path):
    runner = CliRunner()

    def docqa(*args: str):
        return runner.invoke(app, ["--data-dir", str(tmp_path / "data"), *args])

    first = docqa("sync", str(source))
    assert first.exit_code == 0, first.output
    assert "4 added, 0 updated, 0 unchanged, 0 deleted, 0 failed" in first.stdout

    missing = docqa("sync", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "cannot be listed, nothing changed" in missing.stderr

    for rel in ("leave.md", "travel/trains.txt", "travel/hotels.txt"):
        (source / rel).unlink()
    guarded = docqa("sync", str(source))
    assert guarded.exit_code == 3
    assert "deletion aborted, nothing deleted" in guarded.stderr
    assert "0 deleted" in guarded.stdout

    lifted = docqa("sync", str(source), "--max-delete-share", "1")
    assert lifted.exit_code == 0
    assert "0 added, 0 updated, 1 unchanged, 3 deleted, 0 failed" in lifted.stdout


# -- an S3-compatible bucket ---------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch):
    """A real S3 API on loopback (moto's server), with throwaway credentials."""
    server_mod = pytest.importorskip(
        "moto.server", reason="moto is not installed: pip install 'moto[server]' (dev extra)"
    )
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url)
    client.create_bucket(Bucket="docs")
    try:
        yield url, client
    finally:
        server.stop()


def test_an_s3_prefix_is_mirrored_and_an_unreachable_bucket_deletes_nothing(s3, make_docqa):
    from ingestion.sources import S3Source

    url, client = s3
    dq = make_docqa(sync={"s3_endpoint_url": url})
    for key, text in TEXTS.items():
        client.put_object(Bucket="docs", Key=f"handbook/{key}", Body=text.encode())
    client.put_object(Bucket="docs", Key="other/elsewhere.txt", Body=b"Not in the prefix.\n")
    source = S3Source("s3://docs/handbook/", endpoint_url=url)

    first = sync_with(dq, source)
    assert (first.added, first.listed) == (4, 4)
    assert {r.source for r in dq.records.list()} == {f"s3://docs/handbook/{k}" for k in TEXTS}

    client.put_object(
        Bucket="docs", Key="handbook/leave.md", Body=b"# Leave\n\nStaff get 30 days of leave.\n"
    )
    client.delete_object(Bucket="docs", Key="handbook/travel/hotels.txt")
    second = sync_with(dq, source)
    assert (second.added, second.updated, second.unchanged, second.deleted) == (0, 1, 2, 1)
    third = sync_with(dq, source)
    assert (third.updated, third.unchanged, third.deleted) == (0, 3, 0)
    hits = dq.retriever.retrieve("how many days of leave").hits
    assert "30 days" in hits[0].chunk.text

    report = dq.reindexer().rebuild()  # originals are fetched from the bucket again
    assert (report.reparsed, report.carried_over) == (3, 0)

    client.delete_object(Bucket="docs", Key="handbook/leave.md")
    import boto3
    from botocore.config import Config

    with socket.socket() as sock:  # a port nobody listens on: the store is down
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    offline = boto3.client(
        "s3", endpoint_url=down, config=Config(retries={"max_attempts": 1}, connect_timeout=1)
    )
    unreachable = sync_with(dq, S3Source("s3://docs/handbook/", client=offline))
    assert unreachable.error and "cannot list s3://docs/handbook/" in unreachable.error
    assert unreachable.deleted == 0 and len(dq.records.list()) == 3  # leave.md stays
