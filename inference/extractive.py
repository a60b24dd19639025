"""An answerer that needs no GPU and no weights beyond the embedding model: it quotes the
sentences of the retrieved passages that best answer the question, each with its citation.

A sentence's score mixes its embedding similarity to the question with the share of the
question's (stemmed) content words it contains, plus a small prior for the passage's rank:
the similarity finds paraphrases, the word overlap finds the names and numbers a
scientific question turns on.

Sentence vectors come with the hits when ingestion kept them (`ScoredChunk.sentence_vectors`,
pooled from the chunk's own forward pass: retrieval/sentences.py), and then every sentence
is scored at no embedding cost. A passage without them (indexed before they were kept)
has its sentences embedded here, which was nearly all the answerer's time, so
only a shortlist is: the `AnswerSettings.embedded_sentences` that rank best on the cheap
terms alone (word overlap, passage rank, the definition pattern), in small batches of
similar length so a short sentence does not pay for the longest one's padding.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from cachetools import LRUCache

from docqa.domain import NOT_FOUND_ANSWER, Answer, Citation, ScoredChunk
from docqa.settings import AnswerSettings
from docqa.text import passage_sentences
from inference.protocols import AnswerEvent
from retrieval.protocols import Embedder

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_STOPWORDS = frozenset(
    """a an and are as at be by can could did do does for from had has have how i in into is
    it its of on or over than that the their them then there these they this to under was
    were what when where which who whom whose why will with would you your about after all
    also any been being between both but during each few more most other same should so
    some such through too very""".split()
)

# Question terms in a sentence count by their rarity among the passages' sentences.
IDF_OVERLAP = True
W_SIMILARITY = 0.55
W_OVERLAP = 0.35
W_RANK = 0.10
# "What is X?" is best answered by a sentence that defines X ("X is a ...", "X, an ...").
W_DEFINITION = 0.3
_WHAT_IS = re.compile(
    r"^\s*(?:what|who)\s+(?:is|are|was|were)\s+(?:an?\s+|the\s+)?(.+?)\s*\??\s*$", re.I
)
MIN_SENTENCE_CHARS = 12
# Sentences embedded per forward pass, shortest first: a batch pads to its longest.
EMBED_BATCH = 2
# A long sentence is embedded by its first characters only (cut at a word): its time grows
# with its length, and its opening says what it is about. None: embedded whole.
EMBED_CHARS: int | None = 300
# A question whose words no sentence holds half of (weighted) is asked in other words than
# the passages': the cheap terms rank its sentences poorly, and WIDER times as many are
# embedded (on benchmarks/sets paraphrase, contains 0.345 with every sentence, 0.319 with 6,
# 0.336 with this rule; benchmarks/RESULTS.md).
LOW_OVERLAP = 0.5
WIDER = 3
# A further sentence joins the answer only if it scores near the best one and comes from
# the same document: a near-scoring sentence of another document was mostly a wrong
# citation (covidqa-dev, against any document within 0.85 before: citation precision
# 0.814 -> 0.871, contains-gold 0.529 -> 0.539; benchmarks/RESULTS.md, stop 20).
FOLLOWER_RATIO = 0.75
FOLLOWERS_SAME_SOURCE = True
# The quotes of one passage read in the passage's order, not in score order: an answer that
# spans two sentences is then quoted as written.
READING_ORDER = True
# A sentence that opens by pointing back ("This ...", "These ...", "However, ...") continues
# the one before it: when it follows the best sentence, it is quoted with it, in place of
# the weakest follower if the answer is full. A gold answer that spans two sentences is
# then quoted whole (covidqa-dev contains-gold +1.2 / +0.7 points on the tuning / held-out
# halves, answers no longer; benchmarks/RESULTS.md, stop 22).
CONTINUATIONS = True
_CONTINUES = re.compile(
    r"^\s*(?:this|these|that|those|it|its|they|their|such|however|moreover|furthermore|"
    r"in\s+addition|additionally|thus|therefore|hence|also|both|which|whereas|but|and)\b",
    re.I,
)
MAX_HEADING_WORDS = 16
# With late interaction on (DOCQA_RETRIEVAL__LATE_INTERACTION_WEIGHT), each sentence's
# word-by-word match with the question comes with the hits and adds this much times it:
# the mean-pooled sentence vector blurs the one word a question turns on. Chosen on the
# tuning half of every set (contains-gold flat from 1.2 to 3; covidqa-dev 0.540 -> ~0.58;
# benchmarks/RESULTS.md, "Late interaction").
W_WORD_MATCH = 1.6
# A question that asks for a quantity or a time ("How many ...", "What percentage ...",
# "When ...") is answered by a sentence that holds a figure: such sentences gain this much.
W_ANSWER_TYPE = 0.12
_ASKS_FIGURE = re.compile(
    r"^\s*(?:when\b|how\s+(?:many|much|long|old|often|large|big|far|high|fast|soon)\b)"
    r"|\b(?:how\s+many|how\s+much|(?:which|what)\s+(?:year|date|month)|"
    r"what\s+(?:(?:is|are|was|were)\s+)?(?:the\s+)?(?:[\w-]+\s+){0,2}"
    r"(?:percentage|percent|proportion|fraction|number|rate|dose|dosage|amount|size|age|"
    r"ratio|duration|period|temperature|length|weight|concentration|frequency|prevalence|"
    r"incidence|cost|price|value|speed|population|limit|maximum|minimum|default))\b",
    re.I,
)
# A figure: digits, not a bracketed reference number ("[12]") alone.
_FIGURE = re.compile(r"(?<![\[\d])\d+(?:[.,]\d+)?(?![\d\]])")
_PLAIN_WORD = re.compile(r"[(\"']?[A-Za-z][A-Za-z\-']*[.,;:!?)\"']*")


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ing", "ies", "es", "ed", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text) if w.lower() not in _STOPWORDS and len(w) > 1}


@dataclass
class _Candidate:
    hit_index: int
    sentence: str
    position: int = 0  # the sentence's place in its passage
    # The score's terms that need no embedding: word overlap and passage rank (weighted,
    # times the prose factor) and the definition bonus.
    lexical: float = 0.0
    prose: float = 1.0
    bonus: float = 0.0
    base: float = 0.0
    score: float = 0.0
    # The sentence's embedding: kept at ingestion (pooled from its chunk's forward pass),
    # else computed here for the shortlisted.
    vector: np.ndarray | None = None

    @property
    def cheap(self) -> float:
        """What the shortlist ranks by: the score without the embedding similarity."""
        return self.lexical + self.bonus


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, embedder: Embedder, settings: AnswerSettings) -> None:
        self.embedder = embedder
        self.settings = settings
        # ~1.5 kB a sentence at 384 dimensions: 20k sentences is ~30 MB.
        self._vectors: LRUCache[str, np.ndarray] = LRUCache(maxsize=20_000)
        self._lock = threading.Lock()  # API requests answer on several threads

    def cache_scope(self) -> dict[str, Any]:
        return {
            "generator": self.name,
            "max_sentences": self.settings.max_sentences,
            "embedded_sentences": self.settings.embedded_sentences,
        }

    def generate(self, question: str, context: list[ScoredChunk]) -> Answer:
        t0 = time.perf_counter()
        picked = self._pick(question, context)
        if not picked:
            return Answer(text=NOT_FOUND_ANSWER, found=False, citations=[])
        if READING_ORDER:
            picked = reading_order(picked)
        # One citation per passage, numbered in order of first use; its text is the quote.
        order: list[int] = []
        quotes: dict[int, list[str]] = {}
        for cand in picked:
            if cand.hit_index not in quotes:
                order.append(cand.hit_index)
                quotes[cand.hit_index] = []
            quotes[cand.hit_index].append(cand.sentence)
        number = {hit: n for n, hit in enumerate(order, start=1)}
        text = " ".join(f"{c.sentence} [{number[c.hit_index]}]" for c in picked)
        citations = [Citation.of(context[i], quote=" … ".join(quotes[i])) for i in order]
        return Answer(
            text=text,
            found=True,
            citations=citations,
            timings_ms={"generate": round((time.perf_counter() - t0) * 1000, 2)},
        )

    def stream(self, question: str, context: list[ScoredChunk]) -> Iterator[AnswerEvent]:
        answer = self.generate(question, context)
        yield AnswerEvent(kind="delta", text=answer.text)
        yield AnswerEvent(kind="final", answer=answer)

    def _sentence_vectors(self, sentences: list[str]) -> np.ndarray:
        """Embeddings of the sentences, computed once per distinct sentence: the same
        passages come back for many questions, and embedding them is most of the time."""
        with self._lock:
            known = {s: self._vectors[s] for s in sentences if s in self._vectors}
        missing = sorted((s for s in dict.fromkeys(sentences) if s not in known), key=len)
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            vectors = self.embedder.embed_documents([_opening(s) for s in batch])
            fresh.update(zip(batch, vectors, strict=True))
        if fresh:
            known.update(fresh)
            with self._lock:
                self._vectors.update(fresh)
        return np.stack([known[s] for s in sentences])

    def _pick(self, question: str, context: list[ScoredChunk]) -> list[_Candidate]:
        candidates = [
            _Candidate(i, s, position=n, vector=vector)
            for i, hit in enumerate(context)
            for n, (s, vector) in enumerate(_sentences_of(hit))
            if len(s) >= MIN_SENTENCE_CHARS
        ]
        # A title shares the question's words and answers nothing ("What is the size of
        # bovine coronavirus?" -> "Complete Genome Sequence of a Bovine Coronavirus Strain"):
        # quote one only when a passage offers nothing else.
        prose = [c for c in candidates if not is_heading(c.sentence, context[c.hit_index])]
        candidates = prose or candidates
        if not candidates:
            return []
        q_terms = content_terms(question)
        definition = _definition_pattern(question)
        figure = W_ANSWER_TYPE if asks_figure(question) else 0.0
        terms = [content_terms(c.sentence) for c in candidates]
        weight = _term_weights(q_terms, terms) if IDF_OVERLAP else dict.fromkeys(q_terms, 1.0)
        total = sum(weight.values())
        best_overlap = 0.0
        for cand, held in zip(candidates, terms, strict=True):
            overlap = sum(weight[t] for t in q_terms & held) / total if total else 0.0
            best_overlap = max(best_overlap, overlap)
            rank_prior = 1.0 / (1 + cand.hit_index)
            # Reference lists, URLs and table debris match words but answer nothing.
            cand.prose = 0.5 + 0.5 * prose_share(cand.sentence)
            defines = definition is not None and definition.search(cand.sentence)
            cand.bonus = W_DEFINITION if defines else 0.0
            cand.lexical = (W_OVERLAP * overlap + W_RANK * rank_prior) * cand.prose
            if figure and _FIGURE.search(cand.sentence):
                cand.lexical += figure
        # Sentences with a kept vector cost nothing to score; of the others, only a
        # shortlist is embedded.
        size = self.settings.embedded_sentences
        if best_overlap < LOW_OVERLAP:
            size *= WIDER
        unknown = shortlist([c for c in candidates if c.vector is None], size)
        if unknown:
            vectors = self._sentence_vectors([c.sentence for c in unknown])
            for cand, vector in zip(unknown, vectors, strict=True):
                cand.vector = vector
        candidates = [c for c in candidates if c.vector is not None]
        matrix = np.stack([c.vector for c in candidates if c.vector is not None])
        sims = matrix @ self.embedder.embed_query(question)
        for cand, sim in zip(candidates, sims, strict=True):
            cand.base = cand.lexical + W_SIMILARITY * float(sim) * cand.prose
            cand.base += W_WORD_MATCH * _word_match(context[cand.hit_index], cand.position)
            cand.score = cand.base + cand.bonus
        ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
        # Followers are measured against the best plain score: a defining sentence leads
        # the answer without crowding out the sentences that complete it.
        best = max(c.base for c in candidates)
        picked = [ranked[0]]
        lead_source = context[ranked[0].hit_index].chunk.source
        for cand in ranked[1:]:
            if len(picked) >= self.settings.max_sentences or cand.score < best * FOLLOWER_RATIO:
                break
            if FOLLOWERS_SAME_SOURCE and context[cand.hit_index].chunk.source != lead_source:
                continue
            if all(not _same_sentence(cand.sentence, p.sentence) for p in picked):
                picked.append(cand)
        if CONTINUATIONS:
            _quote_continuation(picked, candidates, self.settings.max_sentences)
        return picked


def _quote_continuation(
    picked: list[_Candidate], candidates: list[_Candidate], max_sentences: int
) -> None:
    """Quote the sentence right after the best one when it continues it (`_CONTINUES`), in
    place of the weakest follower when the answer is full; the best one always stays."""
    lead = picked[0]
    after = next(
        (
            c
            for c in candidates
            if c.hit_index == lead.hit_index and c.position == lead.position + 1
        ),
        None,
    )
    if after is None or not _CONTINUES.match(after.sentence):
        return
    # Already quoted, perhaps from the overlapping neighbour chunk (as followers are checked).
    if any(_same_sentence(after.sentence, p.sentence) for p in picked):
        return
    if len(picked) < max_sentences:
        picked.append(after)
    elif len(picked) > 1:
        picked[-1] = after


def reading_order(picked: list[_Candidate]) -> list[_Candidate]:
    """The picked sentences passage by passage (the passage of the best one first), each
    passage's in the order they are written."""
    first_use = {c.hit_index: n for n, c in reversed(list(enumerate(picked)))}
    return sorted(picked, key=lambda c: (first_use[c.hit_index], c.position))


def _sentences_of(hit: ScoredChunk) -> list[tuple[str, np.ndarray | None]]:
    """A passage's sentences, each with its kept vector when ingestion kept one (a zero
    row: none was kept for that sentence)."""
    sentences = passage_sentences(hit.chunk.text)
    kept = hit.sentence_vectors
    if kept is None or len(kept) != len(sentences):
        return [(s, None) for s in sentences]
    return [(s, v if v.any() else None) for s, v in zip(sentences, kept, strict=True)]


def _word_match(hit: ScoredChunk, position: int) -> float:
    """The sentence's word-by-word match with the question, when retrieval measured it."""
    matches = hit.sentence_matches
    if matches is None or position >= len(matches):
        return 0.0
    return float(matches[position])


def _opening(sentence: str) -> str:
    """What of a sentence is embedded: its first EMBED_CHARS characters, cut at a word."""
    if EMBED_CHARS is None or len(sentence) <= EMBED_CHARS:
        return sentence
    cut = sentence[:EMBED_CHARS]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def shortlist(candidates: list[_Candidate], size: int) -> list[_Candidate]:
    """The `size` candidates with the best cheap scores, in passage order (all when `size`
    is 0 or they are no more)."""
    if size <= 0 or len(candidates) <= size:
        return candidates
    best = sorted(range(len(candidates)), key=lambda i: -candidates[i].cheap)[:size]
    return [candidates[i] for i in sorted(best)]


def _term_weights(q_terms: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """Each question term weighted by how rare it is among the passages' sentences: the
    word every sentence repeats (the topic) tells them apart less than the one few hold."""
    n = len(sentences)
    return {t: math.log(1 + n / (1 + sum(t in s for s in sentences))) for t in q_terms}


def is_heading(sentence: str, hit: ScoredChunk) -> bool:
    """A title or heading line: the chunk's own section name, or a short line without a
    final stop whose words are mostly capitalised."""
    if sentence.rstrip(" :") in hit.chunk.section.split(" > "):
        return True
    words = sentence.split()
    if sentence.rstrip()[-1:] in ".!?…" or len(words) > MAX_HEADING_WORDS:
        return False
    long_words = [w for w in words if len(w) > 3]
    capitalised = sum(1 for w in long_words if w[0].isupper())
    return bool(long_words) and capitalised / len(long_words) >= 0.6


def prose_share(sentence: str) -> float:
    """Share of whitespace-separated tokens that are plain words."""
    tokens = sentence.split()
    if not tokens:
        return 0.0
    words = sum(1 for t in tokens if _PLAIN_WORD.fullmatch(t))
    return words / len(tokens)


def asks_figure(question: str) -> bool:
    """Whether the question asks for a quantity, a rate or a time."""
    return bool(_ASKS_FIGURE.search(question))


def _definition_pattern(question: str) -> re.Pattern[str] | None:
    match = _WHAT_IS.match(question)
    if not match:
        return None
    subject = re.escape(match.group(1).strip())
    return re.compile(
        rf"{subject}(?:\s*\([^)]*\))?(?:,\s*(?:an?|the)\s|\s+(?:is|are|was|were)\s+(?:an?|the)\s)",
        re.I,
    )


def _same_sentence(a: str, b: str) -> bool:
    # Overlapping neighbour chunks repeat sentences; quote each once.
    ta, tb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(ta & tb) / max(1, len(ta | tb)) > 0.8
