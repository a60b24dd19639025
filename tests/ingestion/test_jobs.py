"""In-process ingestion jobs: a job that keeps taking the process down is given up, and a
deleted document stays deleted whatever point its ingestion had reached."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from docqa.db import utcnow
from docqa.domain import DocumentStatus, IngestOutcome, JobStatus
from ingestion.jobs import new_job_id
from ingestion.local_jobs import InProcessJobRunner
from ingestion.records import documents
from ingestion.uploads import STAGING_PREFIX, IncomingFile, accept_uploads, sweep_uploads


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def any_store_dq(request, make_docqa):
    """A Docqa whose record store is SQLite, or PostgreSQL (a database of its own): the
    conditional writes that make deletes stick must hold on both."""
    if request.param == "sqlite":
        yield make_docqa()
        return
    yield make_docqa(database_url=request.getfixturevalue("pg_database").url)


class ProcessDied(BaseException):
    """Stands for the process being killed mid-job: nothing after it runs, nothing is
    recorded (the runner catches Exception, never this)."""


def upload(dq, name: str, text: str):
    path = dq.settings.data_dir.parent / name
    path.write_text(text)
    with path.open("rb") as fh:
        [item] = accept_uploads(dq.settings, [IncomingFile(name, fh)])
    dq.records.mark_queued(
        item.document_id, source=name, file_type=path.suffix[1:], stored_path=str(item.path)
    )
    job_id = new_job_id()
    dq.jobs.create(job_id, [item.document_id])
    return job_id, item


def runner(dq, indexer=None) -> InProcessJobRunner:
    return InProcessJobRunner(
        jobs=dq.jobs,
        records=lambda name: dq.for_collection(name).records,
        indexer=indexer or (lambda name: dq.for_collection(name).indexer()),
        max_attempts=dq.settings.ingestion.max_job_attempts,
    )


def chunks_of(dq, document_id: str) -> set[str]:
    index = dq.indexes.current()
    ids = set(index.vectors.ids()) | set(index.lexical.ids())
    return {i for i in ids if document_id in i}


# -- poison jobs -------------------------------------------------------------------------


def test_a_job_that_kills_the_process_twice_is_not_resumed_a_third_time(any_store_dq):
    dq = any_store_dq
    job_id, item = upload(dq, "bomb.txt", "Pretend this file kills the parser.")
    starts = []

    class Killer:
        def ingest_file(self, *args, **kwargs):
            starts.append(time.monotonic())
            raise ProcessDied

    for _ in range(2):  # the server starts, resumes the job, dies on it: twice
        jobs = runner(dq, indexer=lambda _collection: Killer())
        assert jobs.resume_unfinished() == 1
        jobs.wait_idle(30)
        jobs.shutdown()
        assert dq.jobs.get(job_id).status == JobStatus.RUNNING  # as a killed process leaves it

    third = runner(dq, indexer=lambda _collection: Killer())
    assert third.resume_unfinished() == 0
    third.shutdown()
    assert len(starts) == 2

    job = dq.jobs.get(job_id)
    assert job.status == JobStatus.FAILED and "interrupted 2 times" in job.error
    [row] = job.results
    assert row["outcome"] == "failed" and row["reason"] == "interrupted_repeatedly"
    record = dq.records.get(item.document_id)
    assert record.status == DocumentStatus.FAILED
    assert record.reason == "interrupted_repeatedly" and "not resumed again" in record.error


def test_a_job_interrupted_once_is_resumed_and_finishes(dq):
    job_id, _item = upload(dq, "shift.txt", "The night shift starts at ten in the evening.")
    dq.jobs.start_attempt(job_id, [])  # it ran once and the process died

    jobs = runner(dq)
    assert jobs.resume_unfinished() == 1
    jobs.wait_idle(120)
    jobs.shutdown()
    job = dq.jobs.get(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2


# -- a restart resumes only what no live runner holds -----------------------------------


def _held(dq, job_id: str, owner: str, stamped_s_ago: float) -> None:
    from ingestion.jobs import jobs as job_table

    dq.jobs.claim(job_id, owner)
    with dq.jobs.engine.begin() as conn:
        conn.execute(
            update(job_table)
            .where(job_table.c.job_id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=stamped_s_ago))
        )


def test_a_restart_leaves_a_live_runners_job_alone_and_takes_over_a_gone_ones(dq):
    import socket

    job_id, _item = upload(dq, "rota.txt", "The rota is posted on Fridays.")
    jobs = runner(dq)
    here = socket.gethostname()
    # Another API worker on this host (a live process), stamping: not ours to resume.
    _held(dq, job_id, f"{here}:{os.getppid()}:worker2", stamped_s_ago=1)
    assert jobs.resume_unfinished() == 0
    # Another host, stamping: likewise.
    _held(dq, job_id, "elsewhere:123:worker", stamped_s_ago=1)
    assert jobs.resume_unfinished() == 0
    assert dq.jobs.get(job_id).status == JobStatus.QUEUED
    # That host stopped stamping a while ago: gone, so this restart takes the job over.
    _held(dq, job_id, "elsewhere:123:worker", stamped_s_ago=600)
    assert jobs.resume_unfinished() == 1
    jobs.wait_idle(120)
    jobs.shutdown()
    job = dq.jobs.get(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.owner == jobs.owner


def test_a_running_server_takes_over_the_job_of_a_host_that_never_comes_back(dq):
    # No restart here: the server that is up looks again every so often (`watch`).
    job_id, _item = upload(dq, "lost.txt", "The lost property office is on the ground floor.")
    jobs = runner(dq)
    _held(dq, job_id, "elsewhere:123:worker", stamped_s_ago=1)
    jobs.watch(interval_s=0.05)
    time.sleep(0.3)
    assert dq.jobs.get(job_id).owner == "elsewhere:123:worker"  # alive: left alone
    _held(dq, job_id, "elsewhere:123:worker", stamped_s_ago=600)
    deadline = time.monotonic() + 120
    while dq.jobs.get(job_id).status != JobStatus.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)
    jobs.shutdown()
    job = dq.jobs.get(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.owner == jobs.owner
    assert job.attempts == 1  # taken over once, not again by later looks


def test_of_two_runners_that_find_a_job_orphaned_one_takes_it(any_store_dq):
    dq = any_store_dq
    job_id, _item = upload(dq, "rota.txt", "The rota is posted on Fridays.")
    _held(dq, job_id, "elsewhere:123:worker", stamped_s_ago=600)
    # Both read the gone owner; the second write finds the job no longer its.
    assert dq.jobs.take_over(job_id, "elsewhere:123:worker", "host-a:1:a")
    assert not dq.jobs.take_over(job_id, "elsewhere:123:worker", "host-b:2:b")
    assert dq.jobs.get(job_id).owner == "host-a:1:a"
    # A job no runner ever claimed is taken the same way.
    other, _ = upload(dq, "menu.txt", "Soup is served on Mondays.")
    assert dq.jobs.take_over(other, None, "host-b:2:b")
    assert not dq.jobs.take_over(other, None, "host-a:1:a")


def test_a_watching_server_leaves_a_job_just_created_to_the_worker_about_to_claim_it(dq):
    # Another API worker created this job and is about to claim it (owner not yet set).
    job_id, _item = upload(dq, "fresh.txt", "The library opens at nine.")
    jobs = runner(dq)
    assert jobs.resume_unfinished(unclaimed_after_s=60) == 0
    assert dq.jobs.get(job_id).owner is None
    # At start, as before, it is taken at once.
    assert jobs.resume_unfinished() == 1
    jobs.wait_idle(120)
    jobs.shutdown()
    assert dq.jobs.get(job_id).status == JobStatus.SUCCEEDED


def test_whose_runner_is_gone():
    import socket
    import subprocess

    from ingestion.jobs import JobRecord
    from ingestion.local_jobs import owner_gone, runner_id

    me = runner_id()
    here = socket.gethostname()
    ended = subprocess.Popen(["true"])
    ended.wait()

    def job(owner, stamped_s_ago=1.0):
        return JobRecord(
            "j", JobStatus.RUNNING, "in-process", [], [], owner=owner,
            heartbeat_at=utcnow() - timedelta(seconds=stamped_s_ago),
        )  # fmt: skip

    assert owner_gone(job(None), me)  # claimed by no one (a job from before owners)
    assert owner_gone(job(me), me)
    assert owner_gone(job(f"{here}:{os.getpid()}:earlier"), me)  # this process's last runner
    assert owner_gone(job(f"{here}:{ended.pid}:x"), me)  # its process has ended
    assert not owner_gone(job(f"{here}:{os.getppid()}:x"), me)
    assert owner_gone(job(f"{here}:{os.getppid()}:x", stamped_s_ago=600), me)  # hung or reused
    assert not owner_gone(job("elsewhere:1:x"), me)
    assert owner_gone(job("elsewhere:1:x", stamped_s_ago=600), me)


def test_a_runner_stamps_only_the_unfinished_jobs_it_holds(dq):
    mine, _ = upload(dq, "a.txt", "Alpha.")
    done, _ = upload(dq, "b.txt", "Beta.")
    theirs, _ = upload(dq, "c.txt", "Gamma.")
    for job_id, owner in ((mine, "me"), (done, "me"), (theirs, "them")):
        _held(dq, job_id, owner, stamped_s_ago=600)
    dq.jobs.update(done, status=JobStatus.SUCCEEDED)
    dq.jobs.beat("me")
    fresh = {
        j: utcnow() - dq.jobs.get(j).heartbeat_at < timedelta(seconds=60)
        for j in (mine, done, theirs)
    }
    assert fresh == {mine: True, done: False, theirs: False}


def test_a_running_job_is_stamped_while_it_runs(dq, monkeypatch):
    import threading

    from ingestion import local_jobs

    monkeypatch.setattr(local_jobs, "HEARTBEAT_S", 0.05)
    job_id, item = upload(dq, "long.txt", "A document that takes a while.")
    release = threading.Event()

    class Slow:
        def ingest_file(self, *args, **kwargs):
            release.wait(30)
            raise RuntimeError("stopped by the test")

    jobs = runner(dq, indexer=lambda _collection: Slow())
    jobs.submit(job_id, [item])
    _held(dq, job_id, jobs.owner, stamped_s_ago=600)
    deadline = time.monotonic() + 10
    while utcnow() - dq.jobs.get(job_id).heartbeat_at > timedelta(seconds=60):
        assert time.monotonic() < deadline, "the runner never stamped its job"
        time.sleep(0.05)
    release.set()
    jobs.wait_idle(30)
    jobs.shutdown()


# -- delete means gone -------------------------------------------------------------------


def test_a_document_deleted_while_queued_is_not_indexed_when_its_job_runs(dq):
    job_id, item = upload(dq, "memo.txt", "The canteen opens at half past eleven.")
    dq.indexer().delete_document(item.document_id)
    assert not item.path.exists()  # the stored original went with it

    jobs = runner(dq)
    assert jobs.resume_unfinished() == 0  # nothing left to run: the upload is gone
    jobs.submit(job_id, [item])  # and had the runner already held it
    jobs.wait_idle(120)
    jobs.shutdown()

    assert dq.records.get(item.document_id) is None
    assert chunks_of(dq, item.document_id) == set()
    [row] = dq.jobs.get(job_id).results
    assert row["reason"] == "deleted"


@pytest.mark.parametrize("moment", ["while parsing", "before the upsert", "after the upsert"])
def test_a_delete_racing_an_ingest_leaves_no_record_and_no_chunk(any_store_dq, moment, monkeypatch):
    dq = any_store_dq
    _job_id, item = upload(dq, "race.txt", "Visitors sign in at the front desk. " * 40)
    indexer = dq.indexer()

    def delete_now() -> None:
        indexer.delete_document(item.document_id)

    if moment == "while parsing":
        parse = indexer.parser.parse

        def parse_then_delete(path, **kwargs):
            parsed = parse(path, **kwargs)
            delete_now()
            return parsed

        monkeypatch.setattr(indexer.parser, "parse", parse_then_delete)

        def no_embedding(texts):
            raise AssertionError("a deleted document's chunks were embedded")

        monkeypatch.setattr(indexer.embedder, "embed_documents", no_embedding)
    else:
        upsert = indexer.index.upsert

        def racing_upsert(chunks, embeddings, sentence_vectors=None):
            if moment == "before the upsert":
                delete_now()
            upsert(chunks, embeddings, sentence_vectors)
            if moment == "after the upsert":
                delete_now()

        monkeypatch.setattr(indexer.index, "upsert", racing_upsert)

    result = indexer.ingest_file(
        item.path, source=item.source, stored_path=str(item.path), recorded=True
    )

    assert result.outcome == IngestOutcome.FAILED and result.reason == "deleted"
    assert dq.records.get(item.document_id) is None
    assert chunks_of(dq, item.document_id) == set()
    assert indexer.repair(scan_orphans=True).orphans_removed == 0


def test_delete_removes_a_stored_upload_but_never_a_source_file(dq, tmp_path):
    source = tmp_path / "handbook.txt"
    source.write_text("Lost badges are reported to the front desk within a day.")
    indexed = dq.indexer().ingest_file(source)
    dq.indexer().delete_document(indexed.document_id)
    assert source.exists()  # a file docqa read from a folder is the user's


# -- what the uploads folder keeps -------------------------------------------------------


def test_failed_uploads_files_are_kept_only_for_the_retention(dq):
    _, bad = upload(dq, "bad.pdf", "not a pdf at all")
    _, good = upload(dq, "good.txt", "Hotel nights are reimbursed up to 140 euros.")
    for item in (bad, good):
        dq.indexer().ingest_file(
            item.path, source=item.source, stored_path=str(item.path), recorded=True
        )
    assert dq.records.get(bad.document_id).status == DocumentStatus.FAILED

    uploads = dq.settings.uploads_dir
    assert sweep_uploads(dq.records, uploads, retention_h=24).failed_removed == 0
    assert bad.path.exists()  # within the retention: kept to look into

    with dq.records.engine.begin() as conn:  # the failure was recorded 25 hours ago
        conn.execute(
            update(documents)
            .where(documents.c.document_id == bad.document_id)
            .values(updated_at=utcnow() - timedelta(hours=25))
        )
    swept = sweep_uploads(dq.records, uploads, retention_h=24)
    assert swept.failed_removed == 1
    assert not bad.path.exists() and not bad.path.parent.exists()
    record = dq.records.get(bad.document_id)
    assert record.status == DocumentStatus.FAILED and record.error  # the why stays
    assert record.stored_path is None
    assert good.path.exists()  # an indexed upload keeps its original (re-indexing reads it)


def test_files_no_record_names_and_staging_leftovers_are_swept(dq):
    uploads = dq.settings.uploads_dir
    stray = uploads / "doc_gone" / "stray.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("left by a crash between placing a file and recording it")
    staging = uploads / f"{STAGING_PREFIX}crashed"
    staging.mkdir()
    (staging / "0000").write_text("half an upload")
    old = time.time() - 48 * 3600
    os.utime(stray, (old, old))

    swept = sweep_uploads(dq.records, uploads, retention_h=24, staging_older_than_s=0)

    assert (swept.unreferenced_removed, swept.staging_removed) == (1, 1)
    assert not stray.exists() and not staging.exists()
    assert sorted(p.name for p in Path(uploads).iterdir()) == []
