"""docqa_sync: mirror each configured source into the index.

Sources are DOCQA_SYNC__SOURCES (folders, and s3:// prefixes with the s3 extra), or
{"sources": [...]} in a manual run's conf. New files are ingested, changed ones (by content
hash) re-indexed, and documents whose files are gone deleted, after the ingestion so a
moved file is never missing in between. A source that cannot be listed, or would lose more
than DOCQA_SYNC__MAX_DELETE_SHARE of its documents at once, has nothing deleted: the run
fails and its log says why. Conf {"max_delete_share": 1.0} lifts the guard for one run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _common import DAG_ARGS, TAGS, run_conf, services, settings, writer_limit
from airflow.sdk import dag, task

SYNC = settings()


@dag(
    dag_id=SYNC.airflow.sync_dag_id,
    schedule=SYNC.airflow.sync_schedule,
    # Two syncs of one source at once would race on the same documents.
    max_active_runs=1,
    tags=TAGS,
    doc_md=__doc__,
    **DAG_ARGS,
)
def docqa_sync() -> None:
    @task(execution_timeout=timedelta(minutes=1))
    def sources() -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        uris = run_conf().get("sources") or settings().sync.sources
        if not uris:
            raise AirflowSkipException("no sources to sync: set DOCQA_SYNC__SOURCES")
        return [str(u) for u in uris]

    @task(execution_timeout=timedelta(minutes=30))
    def plan(uri: str) -> dict[str, Any]:
        """List the source and diff it against the record store."""
        from ingestion.sources import open_source
        from ingestion.sync import plan_sync

        share = run_conf().get("max_delete_share")
        with services("docqa_sync.plan") as docqa:
            source = open_source(uri, docqa.settings)
            return plan_sync(
                docqa.records,
                source,
                fingerprint=docqa.index_fingerprint(),
                max_delete_share=docqa.settings.sync.max_delete_share if share is None else share,
            ).to_dict()

    @task(execution_timeout=timedelta(minutes=1))
    def batches(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Cut every source's new and changed files into batches, the fan-out unit."""
        size = settings().airflow.ingest_batch_size
        out = []
        for p in plans:
            files = p["to_ingest"]
            for start in range(0, len(files), size):
                out.append({"source_uri": p["source_uri"], "files": files[start : start + size]})
        return out

    @task(execution_timeout=timedelta(hours=2), max_active_tis_per_dag=writer_limit())
    def ingest(batch: dict[str, Any]) -> list[dict[str, Any]]:
        from ingestion.sources import open_source
        from ingestion.sync import PlannedFile, ingest_planned

        with services("docqa_sync.ingest", write=True) as docqa:
            source = open_source(batch["source_uri"], docqa.settings)
            files = [PlannedFile(**f) for f in batch["files"]]
            return [r.to_row() for r in ingest_planned(docqa.indexer(), source, files)]

    # Runs when there was nothing to ingest (skipped) too, never after a failed ingest.
    @task(
        execution_timeout=timedelta(minutes=30),
        trigger_rule="none_failed",
        max_active_tis_per_dag=writer_limit(),
    )
    def prune(plan: dict[str, Any]) -> dict[str, Any]:
        """Delete the documents whose files are gone, unless the deletion guard says no."""
        from ingestion.sources import open_source
        from ingestion.sync import SyncPlan, prune_deleted

        sync_plan = SyncPlan.from_dict(plan)
        with services("docqa_sync.prune", write=True) as docqa:
            source = open_source(sync_plan.source_uri, docqa.settings)
            deleted = prune_deleted(docqa.indexer(), source, sync_plan)
        return {"source_uri": sync_plan.source_uri, "deleted": [d.source for d in deleted]}

    @task(execution_timeout=timedelta(minutes=5), trigger_rule="all_done")
    def report(
        uris: list[str],
        plans: list[dict[str, Any]],
        ingested: list[list[dict[str, Any]]],
        pruned: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Log what the sync did per source; fail the run if any part of it did not happen."""
        from airflow.sdk.exceptions import AirflowFailException

        from ingestion.sync import summarize_run

        reports, problems = summarize_run(
            list(plans or []), list(ingested or []), list(pruned or []), sources=len(uris or [])
        )
        for r in reports:
            print(r.summary())
        if problems:
            raise AirflowFailException("; ".join(problems))
        return [r.to_dict() for r in reports]

    uris = sources()
    plans = plan.expand(uri=uris)
    ingested = ingest.expand(batch=batches(plans))
    pruned = prune.expand(plan=plans)
    ingested >> pruned
    report(uris, plans, ingested, pruned)


docqa_sync()
