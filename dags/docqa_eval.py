"""docqa_eval: run the benchmark, write the report, fail when quality dropped.

Runs nightly (DOCQA_EVALS__SCHEDULE, UTC) and whenever the serving index is rebuilt (the
`docqa_index` asset of _common.py, which docqa_reindex's rebuild task updates). The
benchmark is DOCQA_EVALS__BENCHMARK; unset, the run is skipped. The gate compares the run with its
benchmark's baseline (`docqa eval baseline RUN`, or the previous run) and fails the DAG
run, so Airflow's alerting fires, when a gated metric drops by more than
DOCQA_EVALS__MAX_DROP; the task log lists the questions that newly fail. A triggered run
may ask only the first questions: conf `{"limit": 50}`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _common import DAG_ARGS, INDEX_ASSET, TAGS, run_conf, settings
from airflow.sdk import dag, task

EVALS = settings()


def _schedule() -> Any:
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

    if not EVALS.evals.schedule:
        return [INDEX_ASSET]
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(EVALS.evals.schedule, timezone="UTC"),
        assets=[INDEX_ASSET],
    )


@dag(
    dag_id="docqa_eval",
    schedule=_schedule(),
    max_active_runs=1,
    tags=[*TAGS, "evals"],
    doc_md=__doc__,
    **DAG_ARGS,
)
def docqa_eval() -> None:
    # One retry: a run interrupted half-way starts over (the benchmark index is reused).
    @task(execution_timeout=timedelta(hours=3), retries=1)
    def run_benchmark() -> dict[str, Any]:
        """Ingest the benchmark's documents into their own index (if changed), ask every
        question, store the run and write its report."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from app import Docqa
        from docqa.errors import DocqaError
        from evals.runner import run_benchmark as run

        conf = settings()
        if conf.evals.benchmark is None:
            raise AirflowSkipException("DOCQA_EVALS__BENCHMARK is not set: nothing to evaluate")
        limit = run_conf().get("limit")  # {"limit": 50}: a quick check on the first questions
        try:
            outcome = run(
                conf,
                conf.evals.benchmark,
                open_docqa=Docqa,
                documents=conf.evals.benchmark_documents,
                limit=int(limit) if limit else None,
                label="docqa_eval DAG",
            )
        except DocqaError as exc:
            raise AirflowFailException(exc.message) from exc
        report = str(outcome.report.html) if outcome.report else None
        print(f"run {outcome.run.run_id}: {outcome.run.metrics}\nreport: {report}")
        return {"run_id": outcome.run.run_id, "metrics": outcome.run.metrics, "report": report}

    @task(execution_timeout=timedelta(minutes=10), retries=2)
    def gate(run: dict[str, Any]) -> dict[str, Any]:
        """Fail (no retry) when the run dropped beyond tolerance against its baseline."""
        from airflow.sdk.exceptions import AirflowFailException

        from evals.compare import gate_against_baseline
        from evals.store import open_store

        conf = settings()
        store = open_store(conf)
        candidate = store.get_run(run["run_id"])
        result = gate_against_baseline(store, candidate, conf.evals)
        if result is None:
            print(f"run {candidate.run_id} is the first of its benchmark: nothing to gate against")
            return {"passed": True, "baseline": None}
        print(result.summary())
        for change in result.comparison.newly_failing:
            print(f"newly failing ({change.check}): {change.qid} {change.question}")
        if not result.passed:
            raise AirflowFailException(f"{result.summary()}\nreport: {run.get('report')}")
        return {"passed": True, "baseline": result.comparison.baseline.run_id}

    gate(run_benchmark())


DAG = docqa_eval()
