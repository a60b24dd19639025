"""Time to a degraded answer when the model servers accept requests but never answer.

A real docqa API on loopback (uvicorn), `DOCQA_ANSWER__GENERATOR=vllm` with the default
timeouts, pointed at fake vLLM servers (tests/fakes/fake_vllm.py, vLLM's wire format) that
stall: `hang` (never sends a byte), `stall` (sends a few words, then silence). Each case
starts a fresh docqa, so no server is cooling down from an earlier case, except the one
that measures exactly that. Times are from sending `POST /v1/ask` to the complete answer
(plain) or to the `final` event (streamed).

    .venv/bin/python -m benchmarks.degraded [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

QUESTION = "How long is the incubation period?"
DOCUMENT = (
    "# Incubation\n\nThe median incubation period was five days in the Wuhan cohort. "
    "Most patients showed symptoms within eleven days of exposure.\n"
)


@contextmanager
def live_docqa(tmp: Path, urls: list[str], embedder: Any) -> Iterator[tuple[str, Any]]:
    """A docqa API on loopback answering with vLLM at `urls`, default vLLM timeouts."""
    import httpx

    from api.main import create_app
    from app import Docqa
    from docqa.settings import load_settings
    from tests.fakes.loopback import serve

    data = tmp / f"data-{time.monotonic_ns()}"
    settings = load_settings(
        data_dir=data, answer={"generator": "vllm", "cache_ttl_s": 0}, vllm={"urls": urls}
    )
    dq = Docqa(settings, embedder=embedder)
    doc = tmp / "incubation.md"
    doc.write_text(DOCUMENT)
    dq.indexer().ingest_file(doc)
    served = serve(create_app(docqa=dq))
    client = httpx.Client(base_url=served.url, timeout=300)
    try:
        yield served.url, client
    finally:
        client.close()
        served.stop()


def ask(client: Any, *, stream: bool) -> dict[str, Any]:
    """Seconds to the answer (and to the first delta, streamed) and what it said."""
    start = time.perf_counter()
    body = {"question": QUESTION, "stream": stream}
    if not stream:
        answer = client.post("/v1/ask", json=body).json()
        return {"seconds": time.perf_counter() - start, "answer": answer}
    first_delta = None
    final: dict[str, Any] = {}
    with client.stream("POST", "/v1/ask", json=body) as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event == "delta" and first_delta is None:
                    first_delta = time.perf_counter() - start
                if event == "final":
                    final = json.loads(line.split(":", 1)[1])
    return {"seconds": time.perf_counter() - start, "first_delta": first_delta, "answer": final}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import docqa  # noqa: F401 - offline switches before any model library loads
    from docqa.settings import load_settings
    from ingestion.embed import SentenceTransformerEmbedder
    from tests.fakes.fake_vllm import Behaviour, FakeVLLM

    defaults = load_settings().vllm
    embedder = SentenceTransformerEmbedder(load_settings().embedding)
    cases: list[tuple[str, list[Behaviour], int]] = [
        ("one server, never answers", [Behaviour(mode="hang")], 1),
        ("one server, headers then silence", [Behaviour(mode="stall", stall_after=0)], 1),
        (
            "one server, silent after three words",
            [Behaviour(mode="stall", stall_after=3, answer="Five days it was, in Wuhan [1].")],
            1,
        ),
        ("one server that timed out, next request", [Behaviour(mode="hang")], 2),
    ]
    if not args.quick:
        cases.insert(2, ("two servers, both never answer", [Behaviour(mode="hang")] * 2, 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for label, behaviours, nth in cases:
            for stream in (False, True):
                with ExitStack() as stack:
                    fakes = [
                        stack.enter_context(FakeVLLM(Behaviour(**vars(b)))) for b in behaviours
                    ]
                    _, client = stack.enter_context(
                        live_docqa(tmp, [f.url for f in fakes], embedder)
                    )
                    for _ in range(nth):
                        result = ask(client, stream=stream)
                    answer = result["answer"]
                    rows.append(
                        {
                            "case": label,
                            "path": "streamed" if stream else "plain",
                            "seconds": round(result["seconds"], 2),
                            "first_delta_s": (
                                round(result["first_delta"], 2)
                                if result.get("first_delta") is not None
                                else None
                            ),
                            "degraded": answer.get("degraded"),
                            "chat_requests": sum(len(f.chats) for f in fakes),
                            "warning": next(iter(answer.get("warnings") or []), ""),
                        }
                    )
    settings_line = (
        f"first_token_budget_s={defaults.first_token_budget_s:g}, "
        f"first_token_timeout_s={defaults.first_token_timeout_s:g}, "
        f"read_timeout_s={defaults.read_timeout_s:g}, max_attempts={defaults.max_attempts}"
    )
    lines = [
        f"Default vLLM settings ({settings_line}); `/v1/ask` on a live docqa (loopback), "
        "stalled fake vLLM servers. Seconds from the request to the whole answer (plain) "
        "or to its `final` event (streamed); requests: chat completions the servers got.",
        "",
        "| case | path | seconds | first delta s | degraded | requests |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = "" if r["first_delta_s"] is None else f"{r['first_delta_s']:.2f}"
        lines.append(
            f"| {r['case']} | {r['path']} | {r['seconds']:.2f} | {first} | "
            f"{r['degraded']} | {r['chat_requests']} |"
        )
    return {
        "title": "Time to a degraded answer with a stalled model server",
        "markdown": "\n".join(lines),
        "figures": {"settings": settings_line, "cases": rows},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one-server cases only")
    result = run(ap.parse_args())
    print(f"## {result['title']}\n\n{result['markdown']}")


if __name__ == "__main__":
    main()
