"""The DAGs as Airflow runs them: they load without errors and without heavy imports,
every task retries with backoff under a timeout, and `dag.test()` runs of ingest, sync and
re-index leave the index mirroring a real folder in real Chroma."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docqa.domain import DocumentStatus, document_id_for
from ingestion.sources import DirectorySource
from tests.conftest import sync_with
from tests.dags.conftest import AIRFLOW_ENV, DAGS, ROOT, task_states, xcom
from tests.documents import HANDBOOK as TEXTS
from tests.documents import write_tree

OURS = ("docqa_ingest", "docqa_sync", "docqa_reindex")
HEAVY = ("torch", "chromadb", "unstructured", "sentence_transformers", "transformers")


def mirror(dq, root: Path) -> dict[str, str]:
    """Assert the record store, Chroma and BM25 hold exactly the files under `root`;
    return each file's indexed text."""
    files = {str(p.resolve()) for p in root.rglob("*") if p.is_file()}
    records = {r.source: r for r in dq.records.list()}
    assert set(records) == files
    assert {r.status for r in records.values()} == {DocumentStatus.INDEXED}
    recorded = {c for r in records.values() for c in r.chunk_ids}
    index = dq.indexes.current()
    assert set(index.vectors.ids()) == set(index.lexical.ids()) == recorded
    assert index.vectors.count() == len(recorded)
    texts: dict[str, str] = {}
    for chunk in index.vectors.get(sorted(recorded)):
        texts[chunk.source] = texts.get(chunk.source, "") + chunk.text
    return texts


@pytest.fixture
def docqa_env(monkeypatch, tmp_path):
    """The DOCQA_* environment the DAG tasks read: the test's data folder, and its folder
    as the one source folder runs may name in conf 'paths'."""
    monkeypatch.setenv("DOCQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCQA_INGESTION__SOURCE_DIRS", str(tmp_path))
    return tmp_path


# -- loading -----------------------------------------------------------------------------


def test_every_dag_loads_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(OURS) <= set(dagbag.dag_ids)


def test_every_task_retries_with_backoff_under_a_timeout(dagbag):
    for dag_id in OURS:
        for task in dagbag.get_dag(dag_id).tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.retries >= 1, where
            assert task.retry_delay.total_seconds() > 0, where
            assert task.retry_exponential_backoff, where
            assert task.execution_timeout is not None, where


def test_sync_schedule_comes_from_the_settings(dagbag):
    assert dagbag.get_dag("docqa_sync").schedule == "@hourly"  # DOCQA_AIRFLOW__SYNC_SCHEDULE
    assert dagbag.get_dag("docqa_ingest").schedule is None  # triggered by uploads


def test_importing_the_dags_folder_loads_no_heavy_library(airflow_db):
    script = textwrap.dedent(
        f"""
        import importlib.util, json, pathlib, sys
        sys.path.append({str(DAGS)!r})
        loaded = []
        for path in sorted(pathlib.Path({str(DAGS)!r}).glob("*.py")):
            spec = importlib.util.spec_from_file_location(path.stem, path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            loaded.append(path.stem)
        print(json.dumps({{"loaded": loaded, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    env = {**os.environ, **AIRFLOW_ENV}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(OURS) <= set(result["loaded"])
    assert result["heavy"] == [], f"imported at DAG parse time: {result['heavy']}"


# -- runs ------------------------------------------------------------------------------


def test_sync_dag_mirrors_a_directory(dagbag, docqa_env, dq, monkeypatch):
    source = write_tree(docqa_env / "handbook", TEXTS)
    monkeypatch.setenv("DOCQA_SYNC__SOURCES", json.dumps([str(source)]))
    dag = dagbag.get_dag("docqa_sync")

    first = dag.test()
    assert first.state == "success", task_states(first)
    mirror(dq, source)

    (source / "leave.md").write_text("# Leave\n\nStaff get 30 days of paid leave from 2026.\n")
    (source / "travel" / "hotels.txt").unlink()
    (source / "remote.txt").write_text("Remote work is allowed two days a week.\n")
    second = dag.test()
    assert second.state == "success", task_states(second)
    [report] = xcom(second, "report")[0]
    assert (report["added"], report["updated"], report["unchanged"], report["deleted"]) == (
        1,
        1,
        2,
        1,
    )
    texts = mirror(dq, source)
    leave = texts[str((source / "leave.md").resolve())]
    assert "30 days" in leave and "27 days" not in leave
    assert not any("140 euros" in t for t in texts.values())

    before = {r.document_id: (r.chunk_ids, r.indexed_at) for r in dq.records.list()}
    generation = dq.indexes.current().lexical.generation()
    third = dag.test()
    assert third.state == "success", task_states(third)
    [report] = xcom(third, "report")[0]
    assert (report["added"], report["updated"], report["deleted"]) == (0, 0, 0)
    assert report["unchanged"] == 4
    assert task_states(third)["ingest"] == ["skipped"]  # nothing to fan out
    assert {r.document_id: (r.chunk_ids, r.indexed_at) for r in dq.records.list()} == before
    assert dq.indexes.current().lexical.generation() == generation


def test_sync_dag_deletes_nothing_when_the_source_cannot_be_listed(dagbag, docqa_env, dq):
    source = write_tree(docqa_env / "handbook", TEXTS)
    sync_with(dq, DirectorySource(source))
    chunks = dq.records.all_chunk_ids()
    missing = docqa_env / "unmounted-share"

    run = dagbag.get_dag("docqa_sync").test(run_conf={"sources": [str(missing)]})

    assert run.state == "failed"  # and the run says why, in the report task's log
    states = task_states(run)
    assert states["plan"] == ["success"] and states["report"] == ["failed"]
    assert states["prune"] == ["failed"]  # the guard refused, deleting nothing
    assert len(dq.records.list()) == 4 and dq.records.all_chunk_ids() == chunks
    index = dq.indexes.current()
    assert set(index.vectors.ids()) == set(index.lexical.ids()) == chunks


def test_ingest_dag_fans_out_and_records_failures_without_failing(dagbag, docqa_env, dq):
    folder = write_tree(docqa_env / "inbox", TEXTS)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not a pdf at all")
    upload = docqa_env / "data" / "uploads" / "u1" / "memo.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("The canteen opens at half past eleven on weekdays.\n")
    upload_id = document_id_for("memo.txt")  # as the API names an upload
    dq.records.mark_queued(upload_id, source="memo.txt", file_type="txt", stored_path=str(upload))
    dq.jobs.create("job_test_1", [upload_id], backend="airflow")

    run = dagbag.get_dag("docqa_ingest").test(
        run_conf={
            "paths": [str(folder)],
            "document_ids": [upload_id],
            "job_id": "job_test_1",
            "batch_size": 2,
        }
    )

    assert run.state == "success", task_states(run)
    assert task_states(run)["ingest"] == ["success"] * 3  # 6 documents in batches of 2
    records = {Path(r.source).name: r for r in dq.records.list()}
    assert records["broken.pdf"].status == DocumentStatus.FAILED
    assert records["broken.pdf"].reason
    assert {n for n, r in records.items() if r.status == DocumentStatus.INDEXED} == {
        "leave.md",
        "trains.txt",
        "hotels.txt",
        "security.md",
        "memo.txt",
    }
    job = dq.jobs.get("job_test_1")
    assert job.status == "failed"  # one document of the run failed, and says so
    assert {r["outcome"] for r in job.results} == {"added", "failed"}
    assert dq.retriever.retrieve("when does the canteen open").hits[0].chunk.source == "memo.txt"

    again = dagbag.get_dag("docqa_ingest").test(run_conf={"paths": [str(folder)]})
    assert again.state == "success"
    rows = [row for batch in xcom(again, "ingest") for row in batch]
    assert sorted(r["outcome"] for r in rows) == ["failed"] + ["unchanged"] * 4


def test_ingest_dag_writes_into_the_collection_its_conf_names(dagbag, docqa_env, dq):
    folder = write_tree(docqa_env / "hr-inbox", {"leave.md": TEXTS["leave.md"]})
    run = dagbag.get_dag("docqa_ingest").test(run_conf={"paths": [str(folder)], "collection": "hr"})
    assert run.state == "success", task_states(run)
    hr = dq.for_collection("hr")
    assert [Path(r.source).name for r in hr.records.list()] == ["leave.md"]
    assert hr.retriever.retrieve("parental leave").hits
    assert dq.records.list() == []  # nothing in the default collection

    bad = dagbag.get_dag("docqa_ingest").test(
        run_conf={"paths": [str(folder)], "collection": "Not A Name"}
    )
    assert bad.state == "failed"
    assert task_states(bad)["plan"] == ["failed"]


@pytest.mark.parametrize(
    "conf",
    [
        {"paths": ["/nonexistent/docqa"]},
        {"paths": "/a/string"},
        {"document_ids": ["doc_nope"]},
        {},
        {"paths": ["/etc/passwd"]},  # a file the worker can read, outside the source folders
    ],
)
def test_ingest_dag_with_a_bad_conf_fails_at_once(dagbag, docqa_env, conf):
    run = dagbag.get_dag("docqa_ingest").test(run_conf=conf)
    assert run.state == "failed"
    assert task_states(run)["plan"] == ["failed"]  # no retries: a retry cannot fix it


def test_bad_conf_messages_say_what_is_wrong(dq):
    from docqa.errors import DocqaError
    from ingestion.batches import plan_batches

    cases = {
        "no such file or folder: /nonexistent/docqa": {
            "paths": ["/nonexistent/docqa"],
            "source_dirs": ["/nonexistent"],
        },
        "conf 'paths' may only name files in the configured source folders; refused "
        "/etc/passwd (no source folders are configured; set DOCQA_INGESTION__SOURCE_DIRS)": {
            "paths": ["/etc/passwd"]
        },
        "refused /srv/docs/../../etc/passwd (allowed: /srv/docs;": {
            "paths": ["/srv/docs/../../etc/passwd"],
            "source_dirs": ["/srv/docs"],
        },
        "conf 'paths' must be a list of strings": {"paths": "/a/string"},
        "no document with id doc_nope": {"document_ids": ["doc_nope"]},
        "nothing to ingest: give document_ids or paths": {},
        "conf 'batch_size' must be a positive whole number": {"paths": [], "batch_size": 0},
    }
    for message, conf in cases.items():
        with pytest.raises(DocqaError, match=re.escape(message)):
            plan_batches(dq.records, default_batch_size=8, **conf)


def test_a_link_inside_a_source_folder_cannot_lead_out_of_it(dq, tmp_path):
    from docqa.errors import DocqaError
    from ingestion.batches import plan_batches

    inbox = write_tree(tmp_path / "inbox", {"memo.txt": "The canteen opens at noon.\n"})
    secret = tmp_path / "secret.txt"
    secret.write_text("root password")
    (inbox / "innocent.txt").symlink_to(secret)
    with pytest.raises(DocqaError, match=r"refused .*innocent\.txt"):
        plan_batches(dq.records, paths=[str(inbox)], default_batch_size=8, source_dirs=[str(inbox)])
    (inbox / "innocent.txt").unlink()
    batches = plan_batches(
        dq.records, paths=[str(inbox)], default_batch_size=8, source_dirs=[str(inbox)]
    )
    assert [Path(i["path"]).name for b in batches for i in b] == ["memo.txt"]


def test_reindex_dag_switches_and_drops_the_old_collection(dagbag, docqa_env, dq):
    source = write_tree(docqa_env / "handbook", TEXTS)
    sync_with(dq, DirectorySource(source))
    old = dq.indexes.current().collection

    run = dagbag.get_dag("docqa_reindex").test(run_conf={"grace_s": 0})

    assert run.state == "success", task_states(run)
    [report] = xcom(run, "rebuild")
    assert report["old_collection"] == old and report["documents"] == 4
    assert xcom(run, "retire") == [[old]]
    assert {c.name for c in dq.indexes.chroma.list_collections()} == {report["new_collection"]}
    mirror(dq, source)
    assert dq.indexes.current().collection == report["new_collection"]
    assert asset_events("docqa_index", run) == 1  # DAGs scheduled on the index run next


def asset_events(name: str, dag_run) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AssetEvent)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.name == name, AssetEvent.source_run_id == dag_run.run_id)
            )
        )


def test_sync_dag_without_sources_skips_instead_of_failing(dagbag, docqa_env):
    run = dagbag.get_dag("docqa_sync").test()  # DOCQA_SYNC__SOURCES unset
    states = task_states(run)
    assert run.state == "success", states
    assert states["sources"] == ["skipped"]
