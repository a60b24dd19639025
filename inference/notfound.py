"""Whether the retrieved passages are worth answering from, or docqa should say it could
not find the answer.

`cosine`: the question's nearest passage must reach `min_relevance` (one threshold,
calibrated on COVID-QA alone). `evidence`: a logistic score over what retrieval found:
the cosine of the nearest passage, the IDF-weighted share of the question's terms the best
keyword matches hold (`coverage`), whether both rankings agree on the top passage
(`agreement`) and, with a reranker, the reranker's top score. The weights were fitted on
half of every question set and the threshold chosen on the same half; the other half
measured the rates (benchmarks/RESULTS.md, issue 13).
"""

from __future__ import annotations

import math

from docqa.settings import AnswerSettings
from retrieval.protocols import Retrieval

# Logistic weights over (1, nearest, coverage, agreement), fitted by benchmarks/quality.py
# --calibrate on the tuning half of COVID-QA dev (with off-topic questions), paraphrase,
# technical and unanswerable.
EVIDENCE_WEIGHTS: dict[str, float] = {
    "bias": -6.0,
    "nearest": 10.0,
    "coverage": 4.0,
    "agreement": 0.5,
}


def evidence(retrieval: Retrieval) -> float:
    """The probability-like score (0 to 1) that the passages hold an answer."""
    w = EVIDENCE_WEIGHTS
    signals = retrieval.signals
    z = (
        w["bias"]
        + w["nearest"] * retrieval.nearest
        + w["coverage"] * signals.get("coverage", 0.0)
        + w["agreement"] * signals.get("agreement", 0.0)
    )
    return 1.0 / (1.0 + math.exp(-z))


def worth_answering(retrieval: Retrieval, settings: AnswerSettings) -> bool:
    """Whether to answer from the passages (otherwise: not found, no generator call)."""
    if not retrieval.hits:
        return False
    rerank = retrieval.signals.get("rerank")
    if settings.min_rerank_score is not None and rerank is not None:
        if rerank < settings.min_rerank_score:
            return False
    if settings.not_found == "cosine":
        return retrieval.nearest >= settings.min_relevance
    return evidence(retrieval) >= settings.min_evidence
