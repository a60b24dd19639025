"""Whether the retrieved passages are worth answering from, or docqa should say it could
not find the answer.

`cosine`: the question's nearest passage must reach `min_relevance` (one threshold,
calibrated on COVID-QA alone). `evidence`: a logistic score over what retrieval found:
the cosine of the nearest passage, the IDF-weighted share of the question's terms the best
keyword matches hold (`coverage`) and the top passage's best sentence holds (`sentence`),
whether both rankings agree on the top passage (`agreement`); with a reranker and
`min_rerank_score`, a low reranker score refuses too. The weights were fitted on
half of every question set and the threshold chosen on the same half; the other half
measured the rates (benchmarks/RESULTS.md, issue 13).
"""

from __future__ import annotations

import math

from docqa.settings import AnswerSettings
from retrieval.protocols import Retrieval

# Logistic weights over the signals, fitted by `benchmarks.quality --calibrate adaptive`
# on the tuning half (even crc32 of the question id) of COVID-QA dev with 30 off-topic
# questions, paraphrase, technical and unanswerable, each set and each class weighing the
# same. Fitted beside them, the keyword coverage of the best keyword matches and the
# agreement of the two rankings added nothing on the held-out half, so they weigh 0.
EVIDENCE_WEIGHTS: dict[str, float] = {
    "bias": -3.467,
    "nearest": 7.49,
    "coverage": 0.0,
    "sentence": 1.032,
    "agreement": 0.0,
}


def evidence(retrieval: Retrieval) -> float:
    """A score from 0 to 1 that rises with the evidence that the passages hold an answer."""
    z = EVIDENCE_WEIGHTS["bias"] + EVIDENCE_WEIGHTS["nearest"] * retrieval.nearest
    for name in ("coverage", "sentence", "agreement"):
        z += EVIDENCE_WEIGHTS[name] * retrieval.signals.get(name, 0.0)
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
