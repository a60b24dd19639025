"""What the web page needs from the API, over real HTTP: ratings of answers
(`POST /v1/feedback`), the passage a citation points at, the calling key's scope, and the
page and API docs served by docqa itself with nothing from a CDN."""

from __future__ import annotations

import re
from typing import Any

import pytest

MEMO = (
    "Canteen rules. The canteen opens at noon on weekdays and closes at three. "
    "Hot meals are served until half past two. The salad bar is restocked every hour."
)


@pytest.fixture
def answered(live) -> tuple[Any, dict[str, Any]]:
    """A live docqa with one document, and its answer to a question about it."""
    upload = live.client.post("/v1/documents", files=[("files", ("canteen.txt", MEMO.encode()))])
    assert upload.status_code == 202, upload.text
    assert live.wait_for_job(upload.json()["job_id"])["status"] == "succeeded"
    answer = live.client.post("/v1/ask", json={"question": "When does the canteen open?"})
    assert answer.status_code == 200 and answer.json()["citations"], answer.text
    return live, answer.json()


def test_feedback_is_stored_with_the_answer_its_citations_and_the_index_version(answered):
    live, answer = answered
    body = {
        "rating": "down",
        "question": "When does the canteen open?",
        "answer": answer["answer"],
        # The citations exactly as /v1/ask returned them (score and all).
        "citations": answer["citations"],
        "comment": "  It opens at 11 on Fridays.  ",
        "found": answer["found"],
        "degraded": answer["degraded"],
    }
    response = live.client.post("/v1/feedback", json=body)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["rating"] == "down" and stored["feedback_id"].startswith("fb_")
    serving = live.docqa.retriever.index_version()
    assert stored["index_version"] == serving

    [record] = live.docqa.eval_store.feedback()
    assert record.feedback_id == stored["feedback_id"]
    assert (record.rating, record.question, record.answer) == (
        "down",
        body["question"],
        body["answer"],
    )
    assert record.comment == "It opens at 11 on Fridays."
    assert record.index_version == serving and record.key_id == "anonymous"
    cited = record.citations[0]
    assert (
        cited["source"] == "canteen.txt" and cited["chunk_id"] == answer["citations"][0]["chunk_id"]
    )
    assert cited["text"] == answer["citations"][0]["text"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"rating": "meh"}, "rating"),
        ({"rating": None}, "rating"),
        ({"question": "   "}, "question"),
        ({"answer": ""}, "answer"),
        ({"comment": "x" * 4001}, "comment"),
        ({"citations": [{"text": "no source"}]}, "citations.0.source"),
        ({"citations": [{"source": "a.txt", "text": "q"}] * 51}, "citations"),
        ({"found": "yes"}, "found"),
        ({"stars": 5}, "stars"),
    ],
)
def test_bad_feedback_is_refused_with_the_field_at_fault_and_nothing_stored(
    live, change: dict[str, Any], param: str
) -> None:
    body = {"rating": "up", "question": "Q?", "answer": "A."} | change
    body = {k: v for k, v in body.items() if v is not None}
    response = live.client.post("/v1/feedback", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request" and error["param"] == param
    assert live.docqa.eval_store.feedback() == []


def test_a_citation_opens_its_whole_passage(answered) -> None:
    live, answer = answered
    citation = answer["citations"][0]
    response = live.client.get(f"/v1/passages/{citation['chunk_id']}")
    assert response.status_code == 200, response.text
    passage = response.json()
    assert passage["source"] == "canteen.txt"
    assert passage["document_id"] == citation["document_id"]
    # The passage holds every sentence the citation quotes.
    for quote in citation["text"].split(" … "):
        assert " ".join(quote.split()) in " ".join(passage["text"].split())

    gone = live.client.get("/v1/passages/doc_nothing:abc:00001")
    assert gone.status_code == 404
    assert gone.json()["error"]["param"] == "chunk_id"


def test_me_says_whether_authentication_is_on(live) -> None:
    me = live.client.get("/v1/me").json()
    assert me == {
        "key_id": "anonymous",
        "name": "authentication off",
        "scope": "admin",
        "collections": None,
        "authentication": False,
    }


def _local_only(html: str) -> list[str]:
    """Every URL the HTML loads (src, href), which must all be docqa's own."""
    return re.findall(r"""(?:src|href)=["']?([^"' >]+)""", html)


def test_page_and_api_docs_load_nothing_from_elsewhere(live) -> None:
    page = live.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for path in ("/", "/docs", "/redoc"):
        html = live.client.get(path).text
        urls = _local_only(html)
        assert urls, path
        for url in urls:
            assert url.startswith(("/", "#")), (path, url)
            if url.startswith("/static"):
                asset = live.client.get(url)
                assert asset.status_code == 200 and asset.content, url
    # FastAPI's own pages (assets from a CDN) are gone.
    assert "cdn.jsdelivr.net" not in live.client.get("/docs").text
    assert "fonts.googleapis.com" not in live.client.get("/redoc").text
    # The page's scripts are modules it imports from /static: each one is served.
    app_js = live.client.get("/static/js/app.js").text
    for module in re.findall(r'from "\./([a-z]+\.js)"', app_js):
        assert live.client.get(f"/static/js/{module}").status_code == 200, module
