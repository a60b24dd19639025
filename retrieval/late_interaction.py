"""Late interaction: how well a passage matches the question word by word, read in context
by the embedding model docqa already has (ColBERT's way of scoring, without its weights).

A chunk vector averages a couple of hundred word pieces into one, so a passage that says
each thing the question asks, in its own words, can lose to one that shares the topic.
Here every content word of the question and of the passage gets the model's output for
it in its own text (`SentencePooling` with one span per word), each question word is
matched with its most similar passage word, and the passage scores the mean of those
best cosines. The fused candidates then gain `late_interaction_weight` times it.

It costs one forward pass over the candidates per question (the passages' word outputs
cannot be kept at ingestion: ~100 kB a chunk): ~100-250 ms for 10 candidates on a 2-core
CPU, whatever the index's size (on a GPU a few ms, not measured). It is on by default
for the quality it buys on every question set (benchmarks/RESULTS.md, "Late interaction"
and stop 22); `DOCQA_RETRIEVAL__LATE_INTERACTION_WEIGHT=0` turns it off where throughput
matters more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from docqa.text import sentence_spans
from retrieval.lexical import WORD_TOKEN, english_stopwords
from retrieval.protocols import SentencePooling


def content_word_spans(text: str) -> list[tuple[int, int]]:
    """The character spans of the text's content words: the words the keyword index keeps
    (two or more word characters, stopwords out)."""
    stop = english_stopwords()
    return [m.span() for m in WORD_TOKEN.finditer(text) if m.group().lower() not in stop]


@dataclass
class WordMatch:
    """How one passage matches the question word by word."""

    # The mean over the question's content words of the best cosine to a passage word.
    score: float
    # The same, per sentence of the passage (`passage_sentences`), over that sentence's
    # words only: what the extractive answerer adds to a sentence's score.
    sentences: np.ndarray


def late_interaction(model: SentencePooling, query: str, texts: Sequence[str]) -> list[WordMatch]:
    """Per text, its word-by-word match with the question (0 to 1; 0 for a text without
    content words, or a question without)."""
    query_spans = content_word_spans(query)
    spans = [content_word_spans(t) for t in texts]
    if not texts or not query_spans:
        return [_no_match(t) for t in texts]
    _, words = model.embed_documents_pooled([query, *texts], [query_spans, *spans])
    # A word past the model's window has no vector: it asks nothing.
    asked = words[0][np.any(words[0] != 0, axis=1)]
    matches = []
    for text, text_spans, said in zip(texts, spans, words[1:], strict=True):
        if not len(asked) or not len(said):
            matches.append(_no_match(text))
            continue
        sims = asked @ said.T
        starts = np.array([a for a, _ in text_spans])
        ends = np.array([b for _, b in text_spans])
        sentences = sentence_spans(text)
        per_sentence = np.zeros(len(sentences), dtype=np.float32)
        for i, (a, b) in enumerate(sentences):
            inside = (starts >= a) & (ends <= b)
            if b > a and inside.any():
                per_sentence[i] = sims[:, inside].max(axis=1).mean()
        matches.append(WordMatch(float(sims.max(axis=1).mean()), per_sentence))
    return matches


def _no_match(text: str) -> WordMatch:
    return WordMatch(0.0, np.zeros(len(sentence_spans(text)), dtype=np.float32))
