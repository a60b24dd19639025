"""Benchmark sets: questions with gold answers over a set of documents.

Two formats are read:
- SQuAD-style JSON (`{"data": [{"title"?, "paragraphs": [{"context", "document_id"?,
  "qas": [{"id", "question", "answers": [{"text"}]}]}]}]}`); each article's paragraphs
  together form one document. COVID-QA (shared/benchmarks/covidqa-dev.json) is one.
- JSONL, one `{"question", "answers": [...], "document"?}` per line, for sets users write;
  the documents then come from a folder given beside it. A row `{"question",
  "answers": [], "unanswerable": true}` is a question the documents do not answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from docqa.errors import DocqaError


class BenchmarkError(DocqaError):
    error_type = "invalid_benchmark"


@dataclass(frozen=True)
class BenchmarkDocument:
    doc_id: str
    title: str
    text: str

    @property
    def filename(self) -> str:
        """A file name that is safe everywhere and maps back to the document id."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.doc_id).strip("._") or "doc"
        return f"{stem}.txt"


@dataclass(frozen=True)
class BenchmarkQuestion:
    qid: str
    question: str
    answers: tuple[str, ...]
    document: str | None = None
    # The documents do not answer it: docqa should say it could not find the answer.
    unanswerable: bool = False


@dataclass
class Benchmark:
    name: str
    questions: list[BenchmarkQuestion]
    documents: list[BenchmarkDocument] = field(default_factory=list)
    documents_dir: Path | None = None
    sha256: str = ""


def load_benchmark(path: Path, documents_dir: Path | None = None) -> Benchmark:
    """Read a benchmark file.

    :raises BenchmarkError: unreadable, malformed, or empty; the message names the line or
        JSON path at fault.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BenchmarkError(f"cannot read benchmark {path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8-sig", errors="replace")
    if path.suffix.lower() == ".jsonl":
        bench = _load_jsonl(path, text, documents_dir)
    else:
        bench = _load_squad(path, text)
    bench.sha256 = digest
    if not bench.questions:
        raise BenchmarkError(f"{path} holds no questions")
    return bench


def _load_squad(path: Path, text: str) -> Benchmark:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BenchmarkError(f"{path}: expected a SQuAD object with a 'data' list at the top")
    documents: list[BenchmarkDocument] = []
    questions: list[BenchmarkQuestion] = []
    for a, article in enumerate(data["data"]):
        where = f"data[{a}]"
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list) or not paragraphs:
            raise BenchmarkError(f"{path}: {where}.paragraphs is missing or empty")
        contexts = []
        doc_id = None
        for p, para in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise BenchmarkError(f"{path}: {pwhere}.context is missing or not text")
            contexts.append(para["context"])
            doc_id = doc_id or (str(para["document_id"]) if "document_id" in para else None)
        doc_id = doc_id or str(article.get("title") or f"article-{a}")
        documents.append(
            BenchmarkDocument(doc_id, str(article.get("title") or doc_id), "\n\n".join(contexts))
        )
        for p, para in enumerate(paragraphs):
            for q, qa in enumerate(para.get("qas") or []):
                qwhere = f"{where}.paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict) or not str(qa.get("question", "")).strip():
                    raise BenchmarkError(f"{path}: {qwhere}.question is missing or empty")
                if qa.get("is_impossible"):
                    continue
                answers = tuple(
                    str(ans["text"])
                    for ans in qa.get("answers") or []
                    if isinstance(ans, dict) and str(ans.get("text", "")).strip()
                )
                if not answers:
                    raise BenchmarkError(f"{path}: {qwhere}.answers has no answer text")
                questions.append(
                    BenchmarkQuestion(str(qa.get("id", qwhere)), qa["question"], answers, doc_id)
                )
    return Benchmark(name=path.stem, questions=questions, documents=documents)


def _load_jsonl(path: Path, text: str, documents_dir: Path | None) -> Benchmark:
    questions = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"{path}:{n}: not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise BenchmarkError(f"{path}:{n}: needs a non-empty 'question'")
        answers = row.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        unanswerable = row.get("unanswerable") is True
        if unanswerable and answers in (None, []):
            answers = []
        elif not isinstance(answers, list) or not [a for a in answers if str(a).strip()]:
            raise BenchmarkError(
                f"{path}:{n}: needs 'answers', a list of answer texts (or "
                '"unanswerable": true for a question the documents do not answer)'
            )
        document = row.get("document")
        questions.append(
            BenchmarkQuestion(
                str(row.get("id", n)),
                str(row["question"]),
                tuple(str(a) for a in answers if str(a).strip()),
                str(document) if document and not unanswerable else None,
                unanswerable=unanswerable,
            )
        )
    if documents_dir is None:
        raise BenchmarkError(
            f"{path}: a JSONL benchmark needs its documents folder (--documents DIR)"
        )
    if not documents_dir.is_dir():
        raise BenchmarkError(f"documents folder {documents_dir} does not exist")
    return Benchmark(name=path.stem, questions=questions, documents_dir=documents_dir)


def materialize(bench: Benchmark, folder: Path) -> dict[str, Path]:
    """Write a SQuAD benchmark's documents as text files; returns doc id -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for doc in bench.documents:
        target = folder / doc.filename
        if not target.exists() or target.read_text(encoding="utf-8") != doc.text:
            target.write_text(doc.text, encoding="utf-8")
        files[doc.doc_id] = target
    return files
