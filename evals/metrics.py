"""Answer and retrieval metrics, with SQuAD's answer normalisation."""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


# A hyphen before a line break or space between two letters: a word a line end cut
# ("clinical-\nly"). Gold spans copied from wrapped text keep the cut, docqa's chunks join
# it (docqa/text.py); both sides drop it so neither form decides a match.
_CUT = re.compile(r"(?<=[a-z])-\s+(?=[a-z])")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 (lower case, no punctuation, no articles, single spaces), with words cut
    by a line-end hyphen joined and Unicode compatibility forms folded (NFKC).

    Ingestion folds ligatures and full-width forms ("inﬂuenza" -> "influenza", so keywords
    match); gold spans copied from the source keep them. Without the same fold here, a
    chunk holding the answer word for word would not count as holding it."""
    text = _CUT.sub("", unicodedata.normalize("NFKC", text).lower())
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def contains_answer(passage: str, answers: Sequence[str]) -> bool:
    norm = normalize_answer(passage)
    return any(gold and gold in norm for gold in map(normalize_answer, answers))


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    best = 0.0
    pred = normalize_answer(prediction).split()
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = Counter(pred) & Counter(gold)
        same = sum(common.values())
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        if same == 0:
            continue
        precision, recall = same / len(pred), same / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def first_hit_rank(relevant: Sequence[bool]) -> int | None:
    """1-based rank of the first relevant item, or None."""
    return next((i for i, r in enumerate(relevant, start=1) if r), None)


def hit_at_k(relevant: Sequence[bool], k: int) -> float:
    return float(any(relevant[:k]))


def reciprocal_rank(relevant: Sequence[bool], k: int = 10) -> float:
    rank = first_hit_rank(relevant[:k])
    return 1.0 / rank if rank else 0.0


def ndcg_at_k(relevant: Sequence[bool], k: int = 10) -> float:
    """Binary-relevance nDCG; the ideal ranking puts every relevant item first."""
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(relevant[:k], start=1) if r)
    n_rel = min(sum(bool(r) for r in relevant), k)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, n_rel + 1))
    return dcg / ideal if ideal else 0.0


# -- groundedness --------------------------------------------------------------------------

# `[1]`, `[2, 3]`: the citation markers docqa's answerers put after a sentence.
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_LEADING_MARKERS = re.compile(r"^\s*((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the this to was
    were which with""".split()
)
# A sentence counts as supported when this share of its content words occurs in the
# chunks it cites: a verbatim quote scores 1.0, a faithful paraphrase keeps most names and
# numbers, an invented claim does not.
SUPPORT_THRESHOLD = 0.75


def strip_citations(text: str) -> str:
    return " ".join(_MARKER.sub(" ", text).split())


def cited_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """The answer's sentences with the 1-based citation numbers each carries.

    Markers that follow a sentence's final stop (`Sentence. [1]`) belong to that sentence.
    """
    sentences: list[tuple[str, list[int]]] = []
    for piece in _SENTENCE_BREAK.split(answer.strip()):
        lead = _LEADING_MARKERS.match(piece)
        if lead and sentences:
            sentences[-1][1].extend(_numbers(lead.group(1)))
            piece = piece[lead.end() :]
        numbers = _numbers(piece)
        text = strip_citations(piece)
        if text:
            sentences.append((text, numbers))
        elif sentences:
            sentences[-1][1].extend(numbers)
    return sentences


def _numbers(text: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(text) for n in re.split(r"\s*,\s*", group)]


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def is_supported(sentence: str, passages: Sequence[str]) -> bool:
    """Whether the passages contain (nearly) every content word of the sentence."""
    words = content_words(sentence)
    if not words:
        return True
    available: set[str] = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(words & available) / len(words) >= SUPPORT_THRESHOLD


def supported_sentences(answer: str, cited_texts: Sequence[str]) -> tuple[int, int]:
    """(supported, total) sentences of an answer, each checked against the chunks it cites.

    `cited_texts[i]` is the full text of citation i+1. A sentence without a marker is checked
    against every chunk the answer cites; a marker that points at no citation supports
    nothing.
    """
    sentences = cited_sentences(answer)
    supported = 0
    for text, numbers in sentences:
        if numbers:
            passages = [cited_texts[n - 1] for n in numbers if 1 <= n <= len(cited_texts)]
        else:
            passages = list(cited_texts)
        supported += is_supported(text, passages)
    return supported, len(sentences)
