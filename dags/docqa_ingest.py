"""docqa_ingest: index the documents a run names, in batches that executors run in parallel.

Trigger it with conf {"document_ids": [...]} for uploads the API recorded (the API does so
itself when DOCQA_AIRFLOW__URL is set, adding "job_id") or {"paths": ["/shared/docs"]} for
files and folders on a disk the workers share, inside the source folders the settings name
(DOCQA_INGESTION__SOURCE_DIRS, and the local folders of DOCQA_SYNC__SOURCES); any other
path fails the run. "collection" names the collection (tenant) the documents belong to
(default: "default"). A document that cannot be indexed is
recorded as failed with its reason; the run fails only when the index cannot be written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _common import DAG_ARGS, TAGS, run_conf, services, settings, writer_limit
from airflow.sdk import dag, task

INGEST_DAG_ID = settings().airflow.ingest_dag_id


@dag(
    dag_id=INGEST_DAG_ID,
    schedule=None,
    max_active_runs=16,
    tags=TAGS,
    doc_md=__doc__,
    **DAG_ARGS,
)
def docqa_ingest() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def plan() -> list[list[dict[str, Any]]]:
        """Resolve the conf into batches of documents."""
        from ingestion.batches import allowed_source_dirs, plan_batches

        conf = run_conf()
        with services("docqa_ingest.plan") as docqa:
            return plan_batches(
                docqa.for_collection(conf.get("collection")).records,
                document_ids=conf.get("document_ids"),
                paths=conf.get("paths"),
                batch_size=conf.get("batch_size"),
                default_batch_size=docqa.settings.airflow.ingest_batch_size,
                source_dirs=allowed_source_dirs(
                    docqa.settings.ingestion.source_dirs, docqa.settings.sync.sources
                ),
            )

    @task(execution_timeout=timedelta(hours=2), max_active_tis_per_dag=writer_limit())
    def ingest(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Parse, chunk, embed and upsert one batch; returns a result per document."""
        from ingestion.batches import ingest_batch

        with services("docqa_ingest.ingest", write=True) as docqa:
            tenant = docqa.for_collection(run_conf().get("collection"))
            return ingest_batch(tenant.indexer(), batch)

    @task(execution_timeout=timedelta(minutes=5))
    def finish(results: list[list[dict[str, Any]]]) -> str:
        """Write the results to the upload's job (when the API triggered the run), and
        remove failed uploads' files past their retention."""
        from ingestion.batches import finish_job
        from ingestion.uploads import sweep_uploads

        with services("docqa_ingest.finish") as docqa:
            status = finish_job(docqa.jobs, run_conf().get("job_id"), list(results))
            sweep_uploads(
                docqa.records,
                docqa.settings.uploads_dir,
                retention_h=docqa.settings.ingestion.failed_upload_retention_h,
            )
            return status

    finish(ingest.expand(batch=plan()))


docqa_ingest()
