"""The report page escapes what it did not write: questions, answers and labels come from
the benchmark file and the model, and must show as text, never as markup."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from evals.report import write_run_report
from evals.results import EvalRun, QuestionResult, summarize
from evals.store import EvalStore

SCRIPT = "<script>alert(1)</script>"
QUESTION = f'Does {SCRIPT} run? "quotes" & ampersands'
ANSWER = f'It said {SCRIPT} and "quotes" & ampersands'
GOLD = '"gold" & <b>bold</b>'


class _Page(HTMLParser):
    """The page as a browser's parser sees it: its tags, and the text of each td cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _runs(store: EvalStore) -> EvalRun:
    """A baseline that answered every question, and a later run that lost the hostile one."""
    good = [
        QuestionResult(
            qid=f"q{i}",
            question=QUESTION if i == 0 else f"Plain question {i}?",
            answers=[GOLD],
            document="doc.txt",
            hit_rank=1,
            doc_rank=1,
            nearest=0.8,
            answered=True,
            answer=ANSWER if i == 0 else "plain",
            found=True,
            f1=1.0,
            contains=True,
            timings_ms={"retrieve": 5.0, "generate": 20.0, "total": 25.0},
        )
        for i in range(3)
    ]
    worse = [dataclasses.replace(r) for r in good]
    worse[0].hit_rank = worse[0].doc_rank = None
    worse[0].contains, worse[0].f1 = False, 0.0
    created = datetime(2026, 1, 1, tzinfo=UTC)
    baseline = EvalRun(
        run_id="run-base",
        created_at=created,
        benchmark="hostile",
        benchmark_path="/b/hostile.json",
        benchmark_sha256="h" * 64,
        generator="extractive",
        questions=len(good),
        metrics=summarize(good),
        config={"answer": {"generator": "extractive"}},
    )
    candidate = dataclasses.replace(
        baseline,
        run_id="run-new",
        created_at=created + timedelta(minutes=5),
        metrics=summarize(worse),
        label=f"label {SCRIPT}",
    )
    store.save_run(baseline, good)
    store.save_run(candidate, worse)
    return candidate


def test_user_text_is_escaped_and_the_page_markup_is_intact(tmp_path: Path) -> None:
    store = EvalStore(f"sqlite:///{tmp_path / 'evals.sqlite'}")
    run = _runs(store)
    files = write_run_report(store, run, tmp_path / "report")
    html = files.html.read_text(encoding="utf-8")

    # No raw markup from user text reaches the page: the page has no script of its own.
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert '"quotes" & ampersands' not in html

    page = _Page()
    page.feed(html)
    page.close()
    # Parsed back, the cells hold the text as written: escaped once, not twice.
    assert QUESTION in page.cells  # newly failing and failing questions
    assert page.cells.count(QUESTION) == 2
    assert ANSWER in page.cells and GOLD in page.cells
    assert "script" not in page.tags
    # The page's own markup is still markup.
    for tag in ("html", "head", "style", "body", "h1", "h2", "table", "tr", "th", "td", "img"):
        assert tag in page.tags, tag
    assert "<h1>docqa evaluation: hostile</h1>" in html
    assert "<h2>Questions that newly fail (1)</h2>" in html
    assert "<td class=q>" in html and "<th>question</th>" in html
    assert 'src="data:image/png;base64,' in html
    assert "· label <b>label &lt;script&gt;" in html

    # The Markdown summary is plain text: the question is there as written, not escaped.
    md = files.markdown.read_text(encoding="utf-8")
    assert f"- `q0` (retrieval, answer): {QUESTION}" in md
    assert "&lt;" not in md and "&amp;" not in md
