"""The docqa_eval DAG in a real Airflow (SQLite metadata DB, `dag.test()`): it runs the
benchmark, writes the report, and fails when the gate fails."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from docqa.settings import load_settings
from evals.results import summarize
from evals.store import open_store
from tests.conftest import ROOT

SCRIPT = """
import json, sys
sys.path.insert(0, {dags!r})
from airflow.utils.state import DagRunState
import docqa_eval
from evals.store import open_store
from docqa.settings import load_settings

def run():
    dr = docqa_eval.DAG.test(run_conf={{"limit": 4}})
    tasks = {{ti.task_id: str(ti.state) for ti in dr.get_task_instances()}}
    return {{"state": str(dr.state), "tasks": tasks}}

first = run()
# Unpin the planted baseline: the next run is gated against the previous (first) run.
store = open_store(load_settings())
store.update_run({baseline!r}, is_baseline=False)
second = run()
print("RESULT " + json.dumps({{"first": first, "second": second}}))
"""


def _perfect_copy(run: Any, results: list[Any]) -> tuple[Any, list[Any]]:
    better = [
        dataclasses.replace(r, hit_rank=1, doc_rank=1, ndcg=1.0, contains=True, f1=1.0)
        for r in results
    ]
    baseline = dataclasses.replace(
        run,
        run_id="planted-perfect-baseline",
        created_at=run.created_at - timedelta(days=1),
        metrics=summarize(better),
        is_baseline=True,
    )
    return baseline, better


def test_dag_structure() -> None:
    sys.path.insert(0, str(ROOT / "dags"))
    try:
        import docqa_eval
    finally:
        sys.path.remove(str(ROOT / "dags"))
    dag = docqa_eval.DAG
    assert dag.dag_id == "docqa_eval"
    assert set(dag.task_ids) == {"run_benchmark", "gate"}
    for task in dag.tasks:
        assert task.execution_timeout is not None and task.retries >= 1
    # Nightly and after each re-index (the docqa_index asset).
    assert "docqa_index" in json.dumps(dag.timetable.serialize(), default=str)


@pytest.mark.slow
def test_dag_fails_when_the_gate_fails(
    tmp_path: Path, stored_run: Any, fixture_benchmark: dict[str, Path]
) -> None:
    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    baseline, results = _perfect_copy(stored_run.run, stored_run.results)
    open_store(settings).save_run(baseline, results)

    home = tmp_path / "airflow"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "DOCQA_DATA_DIR": str(data),
        "DOCQA_EVALS__BENCHMARK": str(fixture_benchmark["squad"]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run(
        [str(airflow), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    script = SCRIPT.format(dags=str(ROOT / "dags"), baseline=baseline.run_id)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    outcome = json.loads(lines[-1].removeprefix("RESULT "))

    first, second = outcome["first"], outcome["second"]
    assert first["state"] == "failed", outcome
    assert first["tasks"] == {"run_benchmark": "success", "gate": "failed"}
    assert second["state"] == "success", outcome
    assert second["tasks"] == {"run_benchmark": "success", "gate": "success"}
    runs = open_store(settings).list_runs()
    assert len(runs) == 3
    newest = runs[0]
    assert newest.label == "docqa_eval DAG"
    assert (Path(newest.report_dir) / "report.html").is_file()
