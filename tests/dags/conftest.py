"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME with a migrated SQLite metadata
database, the project's dags folder, and a DagBag loaded from it.

The environment is set when this file is imported, before anything imports Airflow (its
configuration is read once, at import), so a developer's own Airflow is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
# Created by Airflow (or `airflow db migrate`) when first used, removed after the session.
AIRFLOW_HOME = Path(tempfile.gettempdir()) / f"docqa-airflow-home-{os.getpid()}"
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
}
os.environ.update(AIRFLOW_ENV)
if str(DAGS) not in sys.path:
    # Airflow puts the dags folder (its bundle) on sys.path for the DAG files' own
    # imports (`from _common import ...`); the tests load them the same way.
    sys.path.append(str(DAGS))


def _airflow_command() -> list[str]:
    script = Path(sys.executable).parent / "airflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """`airflow db migrate` into the temporary AIRFLOW_HOME (about 3 s on SQLite)."""
    pytest.importorskip("airflow", reason="Airflow is not installed: pip install 'docqa[airflow]'")
    if "airflow.configuration" in sys.modules:
        from airflow.configuration import AIRFLOW_HOME as loaded_home

        if Path(loaded_home) != AIRFLOW_HOME:
            pytest.fail("Airflow was imported before tests/dags/conftest.py set AIRFLOW_HOME")
    env = {**os.environ, **AIRFLOW_ENV}
    done = subprocess.run(
        [*_airflow_command(), "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}"
    yield AIRFLOW_HOME
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def xcom(dag_run: Any, task_id: str) -> list[Any]:
    """The return values of a task in a finished run (one per mapped instance)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value"
            )
        ).all()
        return [XComModel.deserialize_value(r) for r in sorted(rows, key=lambda r: r.map_index)]


def task_states(dag_run: Any) -> dict[str, list[str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
        states: dict[str, list[str]] = {}
        for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index)):
            states.setdefault(ti.task_id, []).append(str(ti.state))
        return states
