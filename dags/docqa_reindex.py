"""docqa_reindex: rebuild the whole index into a new collection, then switch to it.

Run it after changing the embedding model or the chunking settings. The rebuild is
verified (every recorded chunk in both stores, smoke queries find their documents) before
the serving alias moves, in one transaction; queries are answered from the old collection
until then, and a failed rebuild leaves it serving. The old collection is dropped after
DOCQA_REINDEX__GRACE_S ({"grace_s": 0} in the conf drops it at once).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _common import DAG_ARGS, INDEX_ASSET, TAGS, run_conf, services, settings
from airflow.sdk import PokeReturnValue, dag, task

REINDEX = settings()


def _grace_s() -> float:
    value = run_conf().get("grace_s")
    return float(settings().reindex.grace_s if value is None else value)


@dag(
    dag_id=REINDEX.airflow.reindex_dag_id,
    schedule=REINDEX.airflow.reindex_schedule,
    max_active_runs=1,
    tags=TAGS,
    doc_md=__doc__,
    **DAG_ARGS,
)
def docqa_reindex() -> None:
    # One retry: a retried rebuild starts over in a fresh collection. Its success updates
    # the docqa_index asset (docqa_eval runs on it).
    @task(execution_timeout=timedelta(hours=12), retries=1, outlets=[INDEX_ASSET])
    def rebuild() -> dict[str, Any]:
        """Build, verify and switch (ingestion/reindex.py)."""
        with services("docqa_reindex.rebuild", write=True) as docqa:
            report = docqa.reindexer().rebuild()
        print(report.summary())
        return report.to_dict()

    @task.sensor(
        poke_interval=60,
        timeout=REINDEX.reindex.grace_s + 3600,
        mode="reschedule",
        execution_timeout=timedelta(seconds=REINDEX.reindex.grace_s + 3600),
    )
    def grace_over() -> PokeReturnValue:
        """Wait until requests still using the old collection have had time to finish."""
        with services("docqa_reindex.grace_over") as docqa:
            left = docqa.reindexer().grace_remaining(grace_s=_grace_s())
        return PokeReturnValue(is_done=left <= 0)

    @task(execution_timeout=timedelta(minutes=30))
    def retire() -> list[str]:
        """Reconcile once more, then drop the old collection and its keyword index."""
        with services("docqa_reindex.retire", write=True) as docqa:
            dropped = docqa.reindexer().retire_old(grace_s=_grace_s())
        print(f"dropped {', '.join(dropped) or 'nothing'}")
        return dropped

    rebuild() >> grace_over() >> retire()


docqa_reindex()
