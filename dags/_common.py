"""What the docqa DAGs share: task defaults, and how a task gets the parts of a docqa
(the composition root, app/) to hand to a stage function.

Kept free of heavy imports: the DAG processor imports the DAG files often, and only the
tasks themselves load the model, Chroma and the parsers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from docqa.settings import Settings, load_settings

if TYPE_CHECKING:
    from app import Docqa

START = datetime(2025, 1, 1, tzinfo=UTC)

# Every task retries with exponential backoff (30 s, 1 min, 2 min, capped at 10 min): a
# Chroma server or database restarting is the usual reason a task fails. Each task also
# sets its own execution_timeout.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "docqa",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
}

TAGS = ["docqa"]

# The @dag(...) arguments every docqa DAG shares; each adds its id, schedule, run limit and
# doc_md.
DAG_ARGS: dict[str, Any] = {
    "start_date": START,
    "catchup": False,
    "default_args": DEFAULT_ARGS,
    "is_paused_upon_creation": False,
}

# The serving index as an Airflow asset: docqa_reindex updates it when a rebuilt collection
# starts serving, so DAGs scheduled on it (docqa_eval) run after every switch.
INDEX_ASSET = Asset(name="docqa_index", uri="docqa://serving-index")


def settings() -> Settings:
    """docqa settings from the DOCQA_* environment of the Airflow process."""
    return load_settings()


def writer_limit() -> int | None:
    """With the embedded on-disk Chroma only one process may write, so writing tasks run
    one at a time; a Chroma server (DOCQA_CHROMA_URL) takes them in parallel."""
    return None if settings().chroma_url else 1


@contextmanager
def services(task: str, *, write: bool = False) -> Iterator[Docqa]:
    """A Docqa for one task. Writing tasks hold the writer lock in embedded mode (a busy
    lock fails the task, and Airflow retries it later).

    Errors a retry cannot fix (a bad conf, the deletion guard) are raised as
    AirflowFailException, so the run fails at once and says why.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from app import Docqa
    from docqa.errors import DocqaError, WriterBusyError
    from docqa.locking import writer_lock

    conf = settings()
    try:
        if write:
            with writer_lock(conf, holder=f"airflow task {task}"):
                yield Docqa(conf)
        else:
            yield Docqa(conf)
    except WriterBusyError:
        raise
    except DocqaError as exc:
        if exc.status_code < 500:
            raise AirflowFailException(exc.message) from exc
        raise


def run_conf() -> dict[str, Any]:
    """The conf the run was triggered with ({} for scheduled runs)."""
    from airflow.sdk import get_current_context

    dag_run = get_current_context().get("dag_run")
    return dict(getattr(dag_run, "conf", None) or {})
