"""Stored benchmark runs and their reports (`docqa eval run` writes them)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from api.deps import DocqaDep
from api.errors import responses
from docqa.errors import NotFoundError

router = APIRouter(prefix="/eval", tags=["evaluation"])
log = logging.getLogger("docqa.api")


class EvalRunOut(BaseModel):
    run_id: str
    created_at: datetime
    benchmark: str
    benchmark_sha256: str
    generator: str
    questions: int
    metrics: dict[str, float] = Field(
        description="hit@k, mrr@10, ndcg@10, doc_recall@k, exact_match, f1, answer_contains, "
        "groundedness, citation_precision, not_found_rate, <stage>_ms_p50/p95 (see docs/evals.md)"
    )
    git_commit: str | None
    index_version: str | None
    duration_s: float
    is_baseline: bool
    label: str | None
    warnings: list[str]
    drift: dict[str, Any] | None = Field(
        None, description="Drift of recent live questions against this run, when there were any."
    )
    report_url: str

    @classmethod
    def of(cls, run: Any) -> EvalRunOut:
        drift = dict(run.drift) if run.drift else None
        if drift:
            drift.pop("live_nearest", None)
        return cls(
            run_id=run.run_id,
            created_at=run.created_at,
            benchmark=run.benchmark,
            benchmark_sha256=run.benchmark_sha256,
            generator=run.generator,
            questions=run.questions,
            metrics=run.metrics,
            git_commit=run.git_commit,
            index_version=run.index_version,
            duration_s=run.duration_s,
            is_baseline=run.is_baseline,
            label=run.label,
            warnings=run.warnings,
            drift=drift,
            report_url=f"/v1/eval/runs/{run.run_id}/report",
        )


class EvalRunList(BaseModel):
    runs: list[EvalRunOut]


@router.get("/runs", response_model=EvalRunList, responses=responses(422))
def list_runs(
    docqa: DocqaDep,
    benchmark: Annotated[str | None, Query(description="Only runs of this benchmark.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EvalRunList:
    """Stored eval runs, newest first."""
    runs = docqa.eval_store.list_runs(benchmark=benchmark, limit=limit)
    return EvalRunList(runs=[EvalRunOut.of(r) for r in runs])


@router.get("/runs/{run_id}", response_model=EvalRunOut, responses=responses(404))
def get_run(run_id: str, docqa: DocqaDep) -> EvalRunOut:
    """One run: its metrics and where its report is (`latest` for the newest)."""
    return EvalRunOut.of(docqa.eval_store.get_run(run_id))


@router.get(
    "/runs/{run_id}/report",
    response_class=HTMLResponse,
    responses={
        # Errors stay JSON in docqa's shape although the page itself is HTML.
        **{
            code: {
                "description": entry["description"],
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                },
            }
            for code, entry in responses(401, 403, 404, 429).items()
        },
        200: {"description": "The run's self-contained HTML report.", "content": {"text/html": {}}},
    },
)
def get_report(run_id: str, docqa: DocqaDep) -> HTMLResponse:
    """The run's HTML report (plots inlined); rendered now if it was never written or moved."""
    from evals.report import write_run_report
    from evals.store import eval_dir

    settings, store = docqa.settings, docqa.eval_store
    run = store.get_run(run_id)
    path = Path(run.report_dir) / "report.html" if run.report_dir else None
    if path is None or not path.is_file():
        target = eval_dir(settings) / "reports" / run.run_id
        try:
            path = write_run_report(store, run, target, settings=settings).html
        except OSError as exc:
            # The folder stays in the server log: a client has no business with server paths.
            log.error("cannot write the report of run %s to %s: %s", run.run_id, target, exc)
            raise NotFoundError(
                f"the report of run {run.run_id} is missing and cannot be written again; "
                f"`docqa eval report {run.run_id}` on the server says why"
            ) from exc
        store.update_run(run.run_id, report_dir=str(target.resolve()))
    return HTMLResponse(path.read_text(encoding="utf-8"))
