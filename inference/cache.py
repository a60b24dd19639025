"""Answer cache: in-process by default, Redis when DOCQA_REDIS_URL is set (shared by every
API replica).

An answer is filed under its *scope* (everything besides the question that shapes it: the
index version, so any ingest or delete invalidates it; filters, top_k, retrieval settings,
the generator's model and prompt) and its question, normalized (`normalize_question`). Keys
are SHA-256 digests of a canonical JSON serialization of those inputs, so two different
inputs never share a key however their values are spelled.

Optionally (`DOCQA_ANSWER__SEMANTIC_CACHE`, off by default) a question worded differently
reuses an answer when its embedding lies within a threshold of a cached question's in the
same scope and both ask with the same words (`SimilarQuestions`): each scope keeps a short
list of candidates (answer key, word signature, question embedding) next to the answers,
in the same store. The embedding model alone cannot tell a paraphrase from a near miss
("did the rate increase" and "decrease" lie at 0.989), so the word check comes first:
see `question_signature` and README "Answer cache" for the figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from retrieval.protocols import Embedder

log = logging.getLogger(__name__)

PREFIX = "docqa:answer:"


class Cache(Protocol):
    """A string-to-JSON cache with short lists of bytes beside it (the semantic layer's
    candidates). A miss, an expired entry and an unreachable backend all read as None (or
    an empty list); writes never raise (a cache must not fail a request)."""

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any, ttl_s: int) -> None: ...

    def append(self, key: str, item: bytes, ttl_s: int, keep: int) -> None:
        """Add `item` to the list at `key`, keep its `keep` newest items, and let the whole
        list expire `ttl_s` after this write."""

    def items(self, key: str) -> list[bytes]:
        """The list at `key`, oldest first."""

    def clear(self) -> None: ...


def cache_key(*parts: object) -> str:
    """A key for `parts`, from their canonical JSON (sorted keys, no whitespace, no NaN).
    Anything that is not plain JSON data raises TypeError: a key must never rest on a
    `str()` that two different values could share."""
    raw = json.dumps(
        parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return PREFIX + hashlib.sha256(raw.encode()).hexdigest()


# Punctuation that frames a question without changing what it asks. It is dropped where
# it does not sit between two word characters, so "3.5", "don't" and "covid-19" keep
# theirs; "-", "+", "#", "%", "$", "/" are never dropped ("-5", "C++", "C#", "5%" differ).
_FRAMING = re.escape(".,;:!?¡¿…'\"«»‹›“”‘’„‚()[]{}–—、。・「」『』")
_FRAMING_PUNCTUATION = re.compile(rf"(?<!\w)[{_FRAMING}]+|[{_FRAMING}]+(?!\w)")


def normalize_question(question: str) -> str:
    """The question as the exact cache layer compares it: Unicode NFKC (fullwidth and
    compatibility forms folded), case folded, invisible format characters and framing
    punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", question)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()
    text = _FRAMING_PUNCTUATION.sub(" ", text)
    return " ".join(text.split())


# Words that do not change what a question asks: articles, pronouns, auxiliaries, modals of
# possibility ("how do I" = "how can I"), a few prepositions, and polite filler.
_FILLER_WORDS = frozenset(
    """a an the is are was were be been being am do does did done doing have has had having
    will would can could may might i me my mine we us our ours you your yours it its they
    them their theirs he him his she her hers this that these those there here what which of
    for in on at by about as please tell know like want wonder explain list give show let
    again also just really actually exactly get gets got getting going go some any""".split()
)
# Words folded into one, because they change a question's meaning the same way.
_FOLDED_WORDS = {
    **dict.fromkeys(["should", "must", "shall", "ought", "need", "needs"], "must"),
    **dict.fromkeys(["not", "no", "never", "without", "nor", "none", "neither"], "not"),
    "whom": "who",
}
# After these the next word is what the relation is about: "from Paris to Berlin" is not
# "from Berlin to Paris", though both have the same words.
_RELATION_WORDS = frozenset(
    "from to than into onto toward towards versus vs between before after".split()
)
_QUESTION_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")


def question_signature(question: str) -> bytes:
    """What a question asks about, as 8 bytes: its content words (stemmed, numbers kept,
    negations and obligations folded, filler dropped) and, after each relation word, the
    word it relates to. Two questions with different signatures never share an answer in
    the semantic layer, however close their embeddings: a substituted word ("CEO"/"CFO",
    "minimum"/"maximum", "2019"/"2020"), a negation, a qualifier or a swapped relation
    makes a near miss, not a paraphrase."""
    text = normalize_question(question)
    text = re.sub(r"\bcannot\b", "can not", text)
    text = re.sub(r"n't\b", " not", text)
    text = re.sub(r"'(?:s|d|re|ll|ve|m)\b", " ", text)
    stem = _english_stemmer().stemWord
    spoken = [w for w in _QUESTION_WORD.findall(text) if w not in _FILLER_WORDS]
    words = [
        word if word[0].isdigit() else stem(word)
        for word in (_FOLDED_WORDS.get(w, w) for w in spoken)
    ]
    relations = {
        f"{word}>{words[i + 1]}"
        for i, word in enumerate(words[:-1])
        if spoken[i] in _RELATION_WORDS
    }
    canonical = "\n".join(sorted(set(words))) + "\n\n" + "\n".join(sorted(relations))
    return hashlib.blake2b(canonical.encode(), digest_size=8).digest()


_stemmers = threading.local()  # a PyStemmer stemmer must not be shared between threads


def _english_stemmer() -> Any:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        from Stemmer import Stemmer  # PyStemmer, which the BM25 index stems with too

        stemmer = _stemmers.english = Stemmer("english")
    return stemmer


@dataclass
class CachedAnswer:
    """An answer found in the cache: the answer's fields, and for a semantic hit the cached
    question it was given for, with the similarity of the two."""

    answer: dict[str, Any]
    question: str
    similarity: float | None = None


@dataclass
class Probe:
    """One question's lookup in one scope; `store` files the fresh answer under the same
    keys (and reuses the question's embedding, computed at most once)."""

    scope_key: str
    answer_key: str
    question: str
    vector: np.ndarray | None = None


class SimilarQuestions:
    """The semantic layer: finds a cached question with the same `question_signature` and
    at least `threshold` cosine similarity to a new one, among the newest `candidates` of
    the same scope.

    Candidates are fixed-size records: the answer key's 32-byte digest, the 8-byte word
    signature, then the question's embedding in float16; a lookup reads one list and
    compares it in one matrix product.
    """

    def __init__(self, embedder: Embedder, *, threshold: float, candidates: int) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.candidates = candidates

    def embed(self, question: str) -> np.ndarray:
        return np.asarray(self.embedder.embed_query(" ".join(question.split())), np.float32)

    def record(self, answer_key: str, question: str, vector: np.ndarray) -> bytes:
        return (
            bytes.fromhex(answer_key.removeprefix(PREFIX))
            + question_signature(question)
            + vector.astype("<f2").tobytes()
        )

    def nearest(
        self, records: list[bytes], question: str, vector: np.ndarray
    ) -> tuple[str, float] | None:
        """The answer key of the most similar candidate with the same signature, at or
        above the threshold; None when there is none."""
        width = 40 + 2 * len(vector)
        signature = question_signature(question)
        # Another model's records (another width) are never compared.
        records = [r for r in records if len(r) == width and r[32:40] == signature]
        if not records:
            return None
        rows = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), width)
        vectors = rows[:, 40:].copy().view("<f2").astype(np.float32)
        similarity = vectors @ vector
        best = int(np.argmax(similarity))
        if similarity[best] < self.threshold:
            return None
        return PREFIX + rows[best, :32].tobytes().hex(), float(similarity[best])


class AnswerCache:
    """Answers by scope and question: the exact layer, then (when on) the semantic one."""

    def __init__(self, store: Cache, ttl_s: int, similar: SimilarQuestions | None = None):
        self.store = store
        self.ttl_s = ttl_s
        self.similar = similar

    def probe(self, scope: dict[str, Any], question: str) -> Probe:
        return Probe(
            scope_key=cache_key("scope", scope),
            answer_key=cache_key("answer", scope, normalize_question(question)),
            question=question,
        )

    def lookup(self, probe: Probe) -> CachedAnswer | None:
        exact = self._read(probe.answer_key)
        if exact is not None or self.similar is None:
            return exact
        probe.vector = self.similar.embed(probe.question)
        candidates = self.store.items(_near_key(probe.scope_key))
        near = self.similar.nearest(candidates, probe.question, probe.vector)
        if near is None:
            return None
        key, similarity = near
        found = self._read(key)
        if found is not None:
            found.similarity = round(similarity, 4)
        return found

    def store_answer(self, probe: Probe, answer: dict[str, Any]) -> None:
        self.store.set(probe.answer_key, {"question": probe.question, "answer": answer}, self.ttl_s)
        if self.similar is None:
            return
        if probe.vector is None:
            probe.vector = self.similar.embed(probe.question)
        self.store.append(
            _near_key(probe.scope_key),
            self.similar.record(probe.answer_key, probe.question, probe.vector),
            self.ttl_s,
            self.similar.candidates,
        )

    def _read(self, key: str) -> CachedAnswer | None:
        value = self.store.get(key)
        if not isinstance(value, dict) or not isinstance(value.get("answer"), dict):
            return None  # expired, or written by an older docqa in another shape
        return CachedAnswer(answer=value["answer"], question=str(value.get("question", "")))


def _near_key(scope_key: str) -> str:
    return PREFIX + "near:" + scope_key.removeprefix(PREFIX)


class LocalCache:
    """Least-recently-used entries in this process, each with its own expiry."""

    def __init__(self, maxsize: int = 1024) -> None:
        from cachetools import LRUCache

        self._entries: LRUCache[str, tuple[float, Any]] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    def _live(self, key: str) -> Any | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._entries[key]
            return None
        return value

    def get(self, key: str) -> Any | None:
        with self._lock:
            raw = self._live(key)
        return json.loads(raw) if isinstance(raw, str) else None

    def set(self, key: str, value: Any, ttl_s: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, json.dumps(value))

    def append(self, key: str, item: bytes, ttl_s: int, keep: int) -> None:
        with self._lock:
            current = self._live(key)
            items = list(current) if isinstance(current, tuple) else []
            items.append(bytes(item))
            self._entries[key] = (time.monotonic() + ttl_s, tuple(items[-keep:]))

    def items(self, key: str) -> list[bytes]:
        with self._lock:
            current = self._live(key)
        return list(current) if isinstance(current, tuple) else []

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisCache:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _unavailable(self, exc: Exception) -> None:
        log.warning("answer cache unavailable (%s): %s", self.url, exc)

    def get(self, key: str) -> Any | None:
        import redis

        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            self._unavailable(exc)
            return None
        return json.loads(raw) if raw is not None else None

    def set(self, key: str, value: Any, ttl_s: int) -> None:
        import redis

        try:
            self.client.set(key, json.dumps(value), ex=ttl_s)
        except redis.RedisError as exc:
            self._unavailable(exc)

    def append(self, key: str, item: bytes, ttl_s: int, keep: int) -> None:
        import redis

        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(key, item)
            pipe.ltrim(key, -keep, -1)
            pipe.expire(key, ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            self._unavailable(exc)

    def items(self, key: str) -> list[bytes]:
        import redis

        try:
            return [item for item in self.client.lrange(key, 0, -1) if isinstance(item, bytes)]
        except redis.RedisError as exc:
            self._unavailable(exc)
            return []

    def clear(self) -> None:
        import redis

        try:
            keys = list(self.client.scan_iter(PREFIX + "*"))
            if keys:
                self.client.delete(*keys)
        except redis.RedisError as exc:
            self._unavailable(exc)
