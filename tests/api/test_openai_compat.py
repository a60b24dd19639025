"""docqa's OpenAI-compatible front door, used through the openai SDK over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.api.test_streaming import DOC, QUESTION, parse_sse, upload
from tests.fakes.fake_vllm import Behaviour, FakeVLLM


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    answer = "The median incubation period was 5.2 days [1]."
    with FakeVLLM(Behaviour(answer=answer, token_delay_s=0.01)) as f:
        yield f


@pytest.fixture
def live_vllm(start_server, fake):
    live = start_server(answer={"generator": "vllm"}, vllm={"urls": [fake.url]})
    upload(live, "incubation.md", DOC)
    return live


def sdk(live, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_sdk_lists_docqa_as_a_model(live):
    assert [m.id for m in sdk(live).models.list()] == ["docqa"]


def test_the_sdk_gets_a_cited_answer(live_vllm):
    completion = sdk(live_vllm).chat.completions.create(
        model="docqa",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! Ask me about your documents."},
            {"role": "user", "content": QUESTION},
        ],
    )
    message = completion.choices[0].message
    assert message.role == "assistant"
    # The sources ride in the text, numbered as the markers (chat front ends show only it).
    answer, sources = message.content.split("\n\nSources:\n")
    assert answer == "The median incubation period was 5.2 days [1]."
    assert sources.startswith("[1] incubation.md, § Incubation: \u201cIncubation The median")
    assert sources.count("\n") == 0  # one cited passage, one line
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    extra = completion.model_extra or {}
    assert extra["citations"][0]["source"] == "incubation.md"
    assert extra["docqa"]["found"] and not extra["docqa"]["degraded"]


def test_the_sdk_streams_a_cited_answer(live_vllm, fake):
    stream = sdk(live_vllm).chat.completions.create(
        model="docqa",
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer, sources = text.split("\n\nSources:\n")
    assert answer == "The median incubation period was 5.2 days [1]."
    assert sources.startswith("[1] incubation.md")
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    extra = final.model_extra or {}
    assert extra["citations"][0]["source"] == "incubation.md"
    assert extra["docqa"]["found"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == fake.chats[0].prompt_tokens


def test_the_response_matches_the_declared_schema(live_vllm):
    import jsonschema

    from tests.api.test_http_api import _resolve

    spec = live_vllm.client.get("/openapi.json").json()
    body = {"model": "docqa", "messages": [{"role": "user", "content": QUESTION}]}
    for path, method, response in [
        ("/v1/chat/completions", "post", live_vllm.client.post("/v1/chat/completions", json=body)),
        ("/v1/models", "get", live_vllm.client.get("/v1/models")),
    ]:
        assert response.status_code == 200, response.text
        declared = spec["paths"][path][method]["responses"]
        assert {"200", "401"} <= set(declared)
        schema = declared["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), _resolve(schema, spec))


def test_the_stream_is_framed_as_openai_frames_it(live_vllm):
    r = live_vllm.client.post(
        "/v1/chat/completions",
        json={
            "model": "docqa",
            "stream": True,
            "messages": [{"role": "user", "content": QUESTION}],
        },
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["citations"]


def test_the_extractive_answerer_serves_the_sdk_too(live):
    upload(live, "incubation.md", DOC)
    client = sdk(live)
    messages = [{"role": "user", "content": QUESTION}]
    completion = client.chat.completions.create(model="docqa", messages=messages)
    assert "5.2 days" in completion.choices[0].message.content
    assert completion.usage is None
    streamed = client.chat.completions.create(model="docqa", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == completion.choices[0].message.content


def test_sdk_errors_carry_docqa_messages(start_server):
    live = start_server(api={"api_key": "s3cret"})
    with pytest.raises(openai.AuthenticationError):
        sdk(live, key="wrong").models.list()
    client = sdk(live, key="s3cret")
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(
            model="docqa", messages=[{"role": "system", "content": "Be brief."}]
        )
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        client.chat.completions.create(model="docqa", messages=[])


def test_the_sources_footer_can_be_turned_off(start_server, fake):
    live = start_server(
        answer={"generator": "vllm"},
        vllm={"urls": [fake.url]},
        api={"openai_sources_footer": False},
    )
    upload(live, "incubation.md", DOC)
    completion = sdk(live).chat.completions.create(
        model="docqa", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.choices[0].message.content == (
        "The median incubation period was 5.2 days [1]."
    )


def test_a_cut_answer_says_length(start_server):
    cut = "The median incubation period was 5.2 days [1] and most patients"
    with FakeVLLM(Behaviour(answer=cut, finish_reason="length")) as f:
        live = start_server(answer={"generator": "vllm"}, vllm={"urls": [f.url]})
        upload(live, "incubation.md", DOC)
        client = sdk(live)
        whole = client.chat.completions.create(
            model="docqa", messages=[{"role": "user", "content": QUESTION}]
        )
        assert whole.choices[0].finish_reason == "length"
        chunks = list(
            client.chat.completions.create(
                model="docqa", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == "length"


OPEN_WEBUI_TITLE = """### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- The title should clearly represent the main theme or subject of the conversation.
### Output:
JSON format: { "title": "your concise title here" }
### Chat History:
<chat_history>
USER: What was the median incubation period in Wuhan?
ASSISTANT: The median incubation period was 5.2 days [1].
</chat_history>"""


def test_open_webui_background_tasks_get_no_retrieval_and_no_traffic(start_server, fake):
    live = start_server(
        answer={"generator": "vllm"}, vllm={"urls": [fake.url]}, evals={"record_traffic": "full"}
    )
    upload(live, "incubation.md", DOC)
    client = sdk(live)
    before = len(fake.chats)
    title = client.chat.completions.create(
        model="docqa", messages=[{"role": "user", "content": OPEN_WEBUI_TITLE}]
    )
    assert json.loads(title.choices[0].message.content) == {
        "title": "What was the median incubation period"
    }
    assert (title.model_extra or {})["citations"] == []
    for task, key in [
        ("Generate 1-3 broad tags categorizing the main themes", "tags"),
        ("Suggest 3-5 relevant follow-up questions", "follow_ups"),
        (
            "Analyze the chat history to determine the necessity of generating search queries",
            "queries",
        ),
    ]:
        prompt = f"### Task:\n{task}\n### Chat History:\n<chat_history>\nUSER: hi\n</chat_history>"
        reply = client.chat.completions.create(
            model="docqa", messages=[{"role": "user", "content": prompt}]
        )
        assert key in json.loads(reply.choices[0].message.content)
    assert len(fake.chats) == before  # the model was never asked
    live.docqa.traffic.flush(10)
    recorded = live.docqa.eval_store.traffic()
    assert all(not (r.question or "").startswith("### Task") for r in recorded)


def test_a_follow_up_is_searched_with_the_question_before_it(start_server, fake):
    live = start_server(answer={"generator": "vllm"}, vllm={"urls": [fake.url]})
    upload(live, "incubation.md", DOC)
    client = sdk(live)
    follow_up = "And for most of them?"
    alone = client.chat.completions.create(
        model="docqa", messages=[{"role": "user", "content": follow_up}]
    )
    assert not (alone.model_extra or {})["docqa"]["found"]  # means nothing by itself
    in_context = client.chat.completions.create(
        model="docqa",
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "The median incubation period was 5.2 days [1]."},
            {"role": "user", "content": follow_up},
        ],
    )
    extra = in_context.model_extra or {}
    assert extra["docqa"]["found"]
    assert extra["citations"][0]["source"] == "incubation.md"
