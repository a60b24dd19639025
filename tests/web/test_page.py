"""The web page in a real browser against a real docqa on loopback: a person pastes a key,
drops files, watches them index, asks, reads the cited passage, rates the answer, deletes a
document; what the page shows, and what docqa stored, are checked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from api.auth import KeyStore, Scope

MEMO = (
    "Travel policy. Employees book train journeys in second class. "
    "The night train to Vienna leaves Platform 7 at 22:40 every Thursday. "
    "Receipts are submitted within thirty days of the journey."
)
NOTES = "# Office notes\n\nThe office plants are watered on Mondays by the facilities team.\n"

# Drops files on the drop zone as a person's drag and drop would: a DataTransfer of Files.
DROP = """([selector, files]) => {
  const data = new DataTransfer();
  for (const [name, text] of files) data.items.add(new File([text], name, {type: "text/plain"}));
  document.querySelector(selector).dispatchEvent(
    new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
}"""

# Every visible control has a name a screen reader can say: its label, aria-label or text.
UNNAMED_CONTROLS = """() => [...document.querySelectorAll("input, textarea, button, a[href]")]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute("aria-label")
                    || el.textContent.trim()))
  .map((el) => el.outerHTML)"""


# Text whose contrast with what lies behind it is under WCAG AA (4.5:1; 3:1 for large
# text), for every visible element with text of its own; disabled controls are exempt.
LOW_CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => v / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (el) => {
    for (let at = el; at; at = at.parentElement) {
      const c = rgb(getComputedStyle(at).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.offsetParent || el.disabled || el.closest("[disabled]")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(behind(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const large = parseFloat(style.fontSize) >= 24 ||
      (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    const text = el.textContent.trim().slice(0, 40);
    if (ratio < (large ? 3 : 4.5)) low.push(`${el.tagName} ${ratio.toFixed(2)} ${text}`);
  }
  return low;
}"""


def _watch_outside(page: Any, base: str) -> list[str]:
    """The URLs outside docqa the page asks for, as they happen; a request the page's
    Content-Security-Policy blocked never leaves the browser and is not counted."""
    outside: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url),
    )
    page.on(
        "requestfailed", lambda r: r.failure == "csp" and r.url in outside and outside.remove(r.url)
    )
    return outside


def _server_with_key(start_server: Callable[..., Any], scope: Scope, **overrides: Any):
    live = start_server(**overrides)
    _, secret = KeyStore(live.docqa.settings.resolved_database_url).create(
        f"{scope.label} person", scope
    )
    return live, secret


def _sign_in(page: Any, url: str, key: str) -> None:
    page.goto(url)
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Use this key").click()
    page.locator("#app").wait_for(state="visible")


def test_a_person_uploads_watches_asks_reads_the_source_and_rates_the_answer(
    start_server, browser
) -> None:
    live, key = _server_with_key(start_server, Scope.WRITE)
    page = browser.new_page()
    elsewhere = _watch_outside(page, live.url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # With authentication on, nothing but the key form shows until a key works.
    page.goto(live.url)
    assert page.get_by_role("heading", name="Paste your API key").is_visible()
    assert not page.locator("#app").is_visible()
    page.get_by_label("API key", exact=True).fill("dq_000000000000_wrong")
    page.get_by_role("button", name="Use this key").click()
    page.get_by_role("alert").filter(has_text="refused this key").wait_for()
    assert not page.locator("#app").is_visible()
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Use this key").click()
    page.locator("#app").wait_for(state="visible")
    assert "write person" in page.locator("#who").inner_text()
    assert page.evaluate("sessionStorage.getItem('docqa.apiKey')") == key
    # A write key may upload and delete, not see evaluation runs.
    assert page.locator("#documents").is_visible()
    assert not page.locator("#evaluation").is_visible()
    assert "Evaluation runs need an admin key" in page.locator("#scope-note").inner_text()

    # Drag and drop of several files: each its own upload with its own progress bar.
    files = [("travel.txt", MEMO), ("office.md", NOTES), ("blank.txt", "   \n")]
    page.evaluate(DROP, ["#dropzone", files])
    uploads = page.locator("#uploads li")
    uploads.first.wait_for()
    assert uploads.count() == 3
    assert page.locator("#uploads progress").count() == 3
    # The table follows the jobs without a reload, up to indexed or failed with the reason.
    table = page.locator("#doc-table tbody")
    travel = table.locator("tr", has_text="travel.txt")
    travel.get_by_text("indexed", exact=True).wait_for(timeout=120_000)
    table.locator("tr", has_text="office.md").get_by_text("indexed", exact=True).wait_for(
        timeout=120_000
    )
    blank = table.locator("tr", has_text="blank.txt")
    blank.get_by_text("failed", exact=True).wait_for(timeout=120_000)
    assert "empty" in blank.inner_text()
    assert re.search(r"travel\.txt\s+indexed\s+\d+", travel.inner_text())
    page.locator("#uploads li", has_text="travel.txt").get_by_text(
        re.compile(r"indexed: \d+ chunks")
    ).wait_for()

    # Ask with the keyboard; the answer comes as a Server-Sent Events stream.
    question = page.get_by_role("textbox", name="Question")
    question.fill("When does the night train to Vienna leave?")
    with page.expect_response(lambda r: r.url.endswith("/v1/ask")) as asked:
        question.press("Enter")
    assert asked.value.headers["content-type"].startswith("text/event-stream")
    card = page.locator("#answers article").first
    card.and_(page.locator("[aria-busy=false]")).wait_for()
    answer_text = card.locator("p.text").inner_text()
    assert "22:40" in answer_text and "[1]" in answer_text
    assert not card.get_by_text("Not found in the documents").is_visible()

    # Each [n] opens the cited passage, the quoted text highlighted; from the keyboard too.
    cite = card.locator("a.cite").first
    cite.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#passage-dialog")
    dialog.wait_for(state="visible")
    assert "travel.txt" in dialog.get_by_role("heading").inner_text()
    meta = dialog.locator("dl").inner_text()
    assert "Document" in meta and "Page" in meta and "Section" in meta
    # The quote shows at once, alone; the whole passage replaces it when it has loaded.
    page.wait_for_function(
        "() => { const b = document.querySelector('#passage-dialog blockquote');"
        " const m = b && b.querySelector('mark');"
        " return m && b.textContent.length > m.textContent.length; }"
    )
    passage = dialog.locator("blockquote").inner_text()
    marked = dialog.locator("mark").first.inner_text()
    assert "22:40" in marked and marked in passage and len(passage) > len(marked)
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    # Timings on demand.
    assert not card.locator("details.timings dl").is_visible()
    card.get_by_text("Timings").click()
    assert "total" in card.locator("details.timings dl").inner_text()

    # Feedback: thumbs down with a comment, stored with everything that was rated.
    send = card.get_by_role("button", name="Send feedback")
    assert send.is_disabled()
    card.get_by_role("button", name="Not helpful").click()
    card.get_by_label("Comment (optional)").fill("It leaves at 22:45 since June.")
    send.click()
    card.get_by_text("feedback recorded").wait_for()
    [rating] = live.docqa.eval_store.feedback()
    assert rating.rating == "down" and rating.comment == "It leaves at 22:45 since June."
    assert rating.question == "When does the night train to Vienna leave?"
    assert rating.answer == answer_text
    assert rating.citations and rating.citations[0]["source"] == "travel.txt"
    assert " ".join(marked.split()) in " ".join(rating.citations[0]["text"].split())
    assert rating.index_version == live.docqa.retriever.index_version()
    assert rating.key_id is not None and rating.key_id in key and rating.found is True

    # "Not found" is said plainly.
    question.fill("What is the boiling point of liquid nitrogen?")
    question.press("Enter")
    not_found = page.locator("#answers article").first
    not_found.get_by_text("Not found in the documents").wait_for()
    assert not_found.locator("a.cite").count() == 0

    # Delete, after a confirmation that names the document.
    travel.get_by_role("button", name="Delete travel.txt").click()
    confirm = page.locator("#confirm-dialog")
    confirm.wait_for(state="visible")
    assert "travel.txt" in confirm.inner_text()
    confirm.get_by_role("button", name="Delete").click()
    travel.wait_for(state="detached")
    assert not any(r.source == "travel.txt" for r in live.docqa.records.list())

    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert page.evaluate(LOW_CONTRAST) == []
    # At phone width nothing needs sideways scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert elsewhere == [] and errors == []


def test_an_ask_key_sees_only_asking_and_a_rate_limit_is_said_plainly(
    start_server, browser
) -> None:
    # /v1/me counts as the first request of the minute, then two questions, then refused.
    live, key = _server_with_key(start_server, Scope.ASK, api={"rate_limits": {"ask": "3/minute"}})
    page = browser.new_page()
    _sign_in(page, live.url, key)
    assert page.locator("#ask").is_visible()
    assert not page.locator("#documents").is_visible()
    assert not page.locator("#evaluation").is_visible()
    assert not page.get_by_role("link", name="Documents").is_visible()
    assert "need a write key" in page.locator("#scope-note").inner_text()
    question = page.get_by_role("textbox", name="Question")
    for n in range(3):
        question.fill(f"Question number {n}?")
        page.get_by_role("button", name="Ask").click()
        page.locator("#answers article[aria-busy=false]").nth(n).wait_for()
    refused = page.locator("#answers article").first.get_by_role("alert")
    refused.wait_for()
    assert re.search(
        r"Too many requests with this key: try again in \d+ seconds", refused.inner_text()
    )


def test_an_admin_key_sees_evaluation_runs_and_their_reports_and_forgetting_the_key_hides_all(
    start_server, browser
) -> None:
    from datetime import UTC, datetime

    from evals.results import EvalRun

    live, key = _server_with_key(start_server, Scope.ADMIN)
    page = browser.new_page()
    _sign_in(page, live.url, key)
    runs = page.locator("#evaluation")
    assert runs.is_visible()
    runs.get_by_text("No evaluation runs yet").wait_for()

    run = EvalRun(
        run_id="run_web_page",
        created_at=datetime.now(UTC),
        benchmark="handbook",
        benchmark_path="handbook.jsonl",
        benchmark_sha256="0" * 64,
        generator="extractive",
        questions=12,
        metrics={"hit@5": 0.75, "f1": 0.5, "not_found_rate": 0.25},
        config={},
        label="nightly",
    )
    live.docqa.eval_store.save_run(run, [])
    page.reload()
    row = runs.locator("tbody tr", has_text="handbook")
    row.wait_for()
    assert re.search(r"12\s+0\.750\s+0\.500\s+25\.0%\s+nightly", row.inner_text())
    # The report is fetched with the key (a link would carry none) into a sandboxed frame.
    row.get_by_role("button", name="Report of run run_web_page").click()
    report = page.frame_locator("#report-frame")
    report.get_by_text("docqa evaluation: handbook").wait_for()
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Forget key").click()
    page.get_by_role("heading", name="Paste your API key").wait_for()
    assert not page.locator("#app").is_visible()
    assert page.locator("#evaluation tbody tr").count() == 0
    assert page.evaluate("sessionStorage.getItem('docqa.apiKey')") is None


def test_a_key_with_two_collections_switches_between_them(start_server, browser, tmp_path):
    live = start_server()
    _, key = KeyStore(live.docqa.settings.resolved_database_url).create(
        "two teams", Scope.WRITE, ["hr", "finance"]
    )
    for name, text in (("hr", MEMO), ("finance", NOTES)):
        path = tmp_path / name / f"{name}-notes.txt"
        path.parent.mkdir()
        path.write_text(text)
        live.docqa.for_collection(name).indexer().ingest_file(path, source=path.name)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _sign_in(page, live.url, key)
    pick = page.get_by_label("Collection")
    pick.wait_for()
    assert pick.locator("option").all_inner_texts() == ["hr", "finance"]
    table = page.locator("#documents tbody")
    table.get_by_text("hr-notes.txt").wait_for()
    assert "finance-notes.txt" not in table.inner_text()

    pick.select_option("finance")
    table.get_by_text("finance-notes.txt").wait_for()
    assert "hr-notes.txt" not in table.inner_text()
    page.get_by_role("textbox", name="Question").fill("When are the office plants watered?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("#answers article[aria-busy=false]").first
    answer.wait_for()
    assert "Mondays" in answer.inner_text()
    assert page.evaluate("sessionStorage.getItem('docqa.collection')") == "finance"
    assert errors == []


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_render_from_docqa_alone(start_server, browser, path: str) -> None:
    live = start_server()
    page = browser.new_page()
    elsewhere = _watch_outside(page, live.url)
    page.goto(live.url + path)
    # The operations are listed once the schema is read: the assets worked.
    page.get_by_text("/v1/feedback").first.wait_for()
    assert elsewhere == []
