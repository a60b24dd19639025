"""Have the questions people ask drifted away from the benchmark docqa was tuned on?

Three signals, each with a test and a size:
- what is asked: the embedding distributions of live and benchmark questions, compared by
  the distance of their centroids, the share of live questions unlike any benchmark question,
  and a kernel two-sample test (MMD with an RBF kernel, p-value by permutation);
- how well it is found: the nearest chunk's similarity (what the "not found" decision
  reads), live against benchmark, by a Kolmogorov-Smirnov test;
- how often docqa gives up: the "not found" rates, by Fisher's exact test.
Drift is significant when any test's p-value is below DOCQA_EVALS__DRIFT_ALPHA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from docqa.settings import Settings
from evals.results import EvalRun, QuestionResult

if TYPE_CHECKING:
    from evals.store import EvalStore
    from retrieval.protocols import Embedder

MAX_SAMPLE = 500  # per side for the kernel test: O(n^2) memory and time
OOD_QUANTILE = 5  # a live question is "unlike the benchmark" below this percentile


@dataclass
class Sample:
    """One side of the comparison. `embeddings` rows are unit vectors of `questions`."""

    questions: int
    embeddings: np.ndarray | None = None
    nearest: list[float] = field(default_factory=list)
    found: list[bool] = field(default_factory=list)


@dataclass
class DriftReport:
    alpha: float
    live_questions: int
    reference_questions: int
    reference_run: str | None = None
    window_days: float | None = None
    since: str | None = None
    until: str | None = None
    embedding: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    not_found: dict[str, Any] | None = None
    significant: bool = False
    notes: list[str] = field(default_factory=list)
    # Kept for plots; not part of the verdict.
    live_nearest: list[float] = field(default_factory=list)

    @property
    def headline(self) -> str:
        if not any((self.embedding, self.scores, self.not_found)):
            return "no drift verdict"
        head = "significant drift" if self.significant else "no significant drift"
        return f"{head} over {self.live_questions} live questions"

    def findings(self) -> list[str]:
        """One sentence per signal, each with its size and p-value."""
        parts = []
        if self.embedding:
            e = self.embedding
            parts.append(
                f"{e['ood_share']:.0%} of live questions are unlike any benchmark question "
                f"({e['expected_ood_share']:.0%} expected), centroid distance "
                f"{e['centroid_distance']:.3f}, MMD {_p(e['p_value'])}"
            )
        if self.scores:
            s = self.scores
            parts.append(
                f"nearest-passage similarity median {s['live_median']:.2f} live vs "
                f"{s['reference_median']:.2f} benchmark (KS {s['ks']:.2f}, {_p(s['p_value'])})"
            )
        if self.not_found:
            n = self.not_found
            parts.append(
                f"'not found' {n['live_rate']:.0%} live vs {n['reference_rate']:.0%} "
                f"benchmark ({_p(n['p_value'])})"
            )
        return parts

    @property
    def verdict(self) -> str:
        if not any((self.embedding, self.scores, self.not_found)):
            return "no drift verdict: " + ("; ".join(self.notes) or "nothing to compare")
        return f"{self.headline}: " + "; ".join(self.findings())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        data = {k: v for k, v in data.items() if k != "verdict"}
        return cls(**data)


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


# -- the tests -----------------------------------------------------------------------------


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int = 500, seed: int = 0
) -> tuple[float, float]:
    """Squared maximum mean discrepancy of two samples (RBF kernel, median-distance
    bandwidth) and its permutation p-value. Identical distributions give p ~ U(0, 1)."""
    z = np.vstack([x, y]).astype(np.float64)
    n, total = len(x), len(x) + len(y)
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    positive = d2[np.triu_indices(total, k=1)]
    positive = positive[positive > 0]
    bandwidth = float(np.median(positive)) if positive.size else 1.0
    k = np.exp(-d2 / bandwidth)

    def weights(labels_first: np.ndarray) -> np.ndarray:
        # a^T K a with a = 1/n on one side and -1/m on the other is the (biased) MMD^2.
        return np.where(labels_first, 1.0 / n, -1.0 / (total - n))

    first = np.zeros(total, dtype=bool)
    first[:n] = True
    a = weights(first)
    observed = float(a @ k @ a)
    rng = np.random.default_rng(seed)
    perms = np.stack([weights(rng.permutation(first)) for _ in range(permutations)], axis=1)
    null = np.einsum("ip,ip->p", perms, k @ perms)
    p_value = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
    return max(observed, 0.0), p_value


def compare_samples(
    reference: Sample,
    live: Sample,
    *,
    alpha: float = 0.01,
    permutations: int = 500,
    min_questions: int = 30,
    seed: int = 0,
) -> DriftReport:
    """Drift of `live` against `reference`; a signal is skipped (with a note) when one side
    has fewer than `min_questions` for it."""
    from scipy.stats import fisher_exact, ks_2samp

    report = DriftReport(
        alpha=alpha, live_questions=live.questions, reference_questions=reference.questions
    )
    rng = np.random.default_rng(seed)
    if live.embeddings is not None and reference.embeddings is not None:
        if min(len(live.embeddings), len(reference.embeddings)) >= min_questions:
            report.embedding = _embedding_shift(
                reference.embeddings, live.embeddings, alpha, permutations, rng, seed
            )
        else:
            report.notes.append(
                f"embedding shift needs {min_questions} questions with text on each side"
            )
    else:
        report.notes.append("embedding shift needs question texts (record_traffic=full)")
    live_scores = [s for s in live.nearest if s is not None]
    if min(len(live_scores), len(reference.nearest)) >= min_questions:
        ks = ks_2samp(live_scores, reference.nearest)
        report.scores = {
            "live_median": round(float(np.median(live_scores)), 4),
            "reference_median": round(float(np.median(reference.nearest)), 4),
            "live_mean": round(float(np.mean(live_scores)), 4),
            "reference_mean": round(float(np.mean(reference.nearest)), 4),
            "ks": round(float(ks.statistic), 4),
            "p_value": float(ks.pvalue),
            "significant": bool(ks.pvalue < alpha),
        }
    else:
        report.notes.append(f"score shift needs {min_questions} scored questions on each side")
    if min(len(live.found), len(reference.found)) >= min_questions:
        live_nf, ref_nf = live.found.count(False), reference.found.count(False)
        table = [[live_nf, len(live.found) - live_nf], [ref_nf, len(reference.found) - ref_nf]]
        _, p = fisher_exact(table)
        report.not_found = {
            "live_rate": round(live_nf / len(live.found), 4),
            "reference_rate": round(ref_nf / len(reference.found), 4),
            "p_value": float(p),
            "significant": bool(p < alpha),
        }
    report.significant = any(
        part is not None and part["significant"]
        for part in (report.embedding, report.scores, report.not_found)
    )
    report.live_nearest = [round(float(s), 4) for s in live_scores]
    return report


def _embedding_shift(
    ref: np.ndarray,
    live: np.ndarray,
    alpha: float,
    permutations: int,
    rng: np.random.Generator,
    seed: int,
) -> dict[str, Any]:
    centroid_ref, centroid_live = ref.mean(axis=0), live.mean(axis=0)
    cos = float(
        centroid_ref
        @ centroid_live
        / max(np.linalg.norm(centroid_ref) * np.linalg.norm(centroid_live), 1e-12)
    )
    # How close a benchmark question usually is to its nearest other benchmark question;
    # a live question farther from every benchmark question than that is out of distribution.
    sims = ref @ ref.T
    np.fill_diagonal(sims, -np.inf)
    threshold = float(np.percentile(sims.max(axis=1), OOD_QUANTILE))
    live_nn = (live @ ref.T).max(axis=1)
    x = ref if len(ref) <= MAX_SAMPLE else ref[rng.choice(len(ref), MAX_SAMPLE, replace=False)]
    y = live if len(live) <= MAX_SAMPLE else live[rng.choice(len(live), MAX_SAMPLE, replace=False)]
    mmd2, p = mmd_permutation_test(x, y, permutations=permutations, seed=seed)
    return {
        "centroid_distance": round(1.0 - cos, 4),
        "ood_share": round(float(np.mean(live_nn < threshold)), 4),
        "expected_ood_share": OOD_QUANTILE / 100,
        "mmd2": round(mmd2, 5),
        "p_value": p,
        "significant": bool(p < alpha),
    }


# -- live traffic against a stored run -----------------------------------------------------


def drift_against_run(
    settings: Settings,
    store: EvalStore,
    run: EvalRun,
    results: Sequence[QuestionResult] | None = None,
    *,
    embedder: Embedder,
    days: float | None = None,
    now: datetime | None = None,
    reference_embeddings: Sequence[np.ndarray] | None = None,
) -> DriftReport:
    """The live questions of the last `days` (DOCQA_EVALS__DRIFT_WINDOW_DAYS) against the
    questions of a stored benchmark run.

    :param embedder: the serving model (live and benchmark questions are embedded with it,
        only when there are enough live questions for a verdict).
    :param reference_embeddings: the run's question embeddings, one per result, when the
        caller has them already (the runner's searches did); otherwise they are computed.
    """
    cfg = settings.evals
    days = days or cfg.drift_window_days
    until = now or datetime.now(UTC)
    since = until - timedelta(days=days)
    traffic = store.traffic(since=since, until=until)
    results = list(results) if results is not None else store.results(run.run_id)
    texts = [t.question for t in traffic if t.question]
    needs_embeddings = len(texts) >= cfg.drift_min_questions
    reference_vectors = None
    if needs_embeddings and reference_embeddings is not None:
        reference_vectors = np.vstack(reference_embeddings)
    elif needs_embeddings:
        reference_vectors = embedder.embed_queries([r.question for r in results])
    reference = Sample(
        questions=len(results),
        embeddings=reference_vectors,
        nearest=[r.nearest for r in results],
        found=[r.found for r in results if r.answered and r.error is None],
    )
    live = Sample(
        questions=len(traffic),
        embeddings=embedder.embed_queries(texts) if needs_embeddings else None,
        nearest=[t.nearest for t in traffic if t.nearest is not None],
        found=[t.found for t in traffic],
    )
    report = compare_samples(
        reference,
        live,
        alpha=cfg.drift_alpha,
        permutations=cfg.drift_permutations,
        min_questions=cfg.drift_min_questions,
    )
    if len(traffic) < cfg.drift_min_questions:
        report.notes.insert(
            0,
            f"only {len(traffic)} live questions in the last {days:g} days (at least "
            f"{cfg.drift_min_questions} needed)",
        )
    report.reference_run = run.run_id
    report.window_days = days
    report.since = since.isoformat(timespec="seconds")
    report.until = until.isoformat(timespec="seconds")
    return report
