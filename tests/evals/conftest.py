"""A small generated benchmark (so eval tests need no shared data), and one stored run of
it shared by every eval test."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from docqa.settings import Settings, load_settings

# Made-up facts: every answer occurs verbatim in exactly one document.
FACTS = {
    "bridges": [
        (
            "The Zorvath bridge over the Kelmora river was completed in 1873.",
            "When was the Zorvath bridge completed?",
            "1873",
        ),
        (
            "Its chief engineer was Ilse Brandtholm, who also designed the Pell viaduct.",
            "Who was the chief engineer of the Zorvath bridge?",
            "Ilse Brandtholm",
        ),
        (
            "The bridge is built of grey granite quarried near Osterwick.",
            "Where was the granite for the Zorvath bridge quarried?",
            "Osterwick",
        ),
        (
            "Each of its seven arches spans forty-two metres.",
            "How many arches does the Zorvath bridge have?",
            "seven",
        ),
    ],
    "bees": [
        (
            "The marbled tundra bee nests only in abandoned lemming burrows.",
            "Where does the marbled tundra bee nest?",
            "abandoned lemming burrows",
        ),
        (
            "Its colonies rarely exceed ninety workers because the summer is short.",
            "How large do marbled tundra bee colonies grow?",
            "ninety workers",
        ),
        (
            "The species was first described by the botanist Aino Very in 1931.",
            "Who first described the marbled tundra bee?",
            "Aino Very",
        ),
        (
            "Marbled tundra bees feed mostly on the nectar of purple saxifrage.",
            "What do marbled tundra bees feed on?",
            "purple saxifrage",
        ),
    ],
    "reactor": [
        (
            "The Helvar test reactor is cooled by molten lithium fluoride salt.",
            "What cools the Helvar test reactor?",
            "molten lithium fluoride salt",
        ),
        (
            "It reached first criticality on 14 March 2019.",
            "When did the Helvar test reactor reach first criticality?",
            "14 March 2019",
        ),
        (
            "The reactor's thermal output is limited to eight megawatts by its licence.",
            "What is the thermal output limit of the Helvar reactor?",
            "eight megawatts",
        ),
        (
            "Spent fuel from Helvar is stored in the Drossel cavern for ten years.",
            "Where is spent fuel from the Helvar reactor stored?",
            "Drossel cavern",
        ),
    ],
    "chess": [
        (
            "The Quellin gambit begins with an early sacrifice of the rook pawn.",
            "What does the Quellin gambit sacrifice early?",
            "the rook pawn",
        ),
        (
            "It is named after Marta Quellin, who played it at the 1958 Lisbon tournament.",
            "At which tournament did Marta Quellin play her gambit?",
            "1958 Lisbon tournament",
        ),
        (
            "Engines rate the Quellin gambit as slightly worse for white.",
            "How do engines rate the Quellin gambit?",
            "slightly worse for white",
        ),
        (
            "The usual reply is to decline the pawn and develop the queen's knight.",
            "What is the usual reply to the Quellin gambit?",
            "decline the pawn and develop the queen's knight",
        ),
    ],
}

FILLER = (
    "This section repeats background that the questions do not ask about, so that the "
    "document has more than one passage and retrieval has something to rank. "
)


def write_fixture_benchmark(folder: Path) -> dict[str, Path]:
    """Write the SQuAD JSON, the JSONL and the documents folder; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = folder / "documents"
    docs.mkdir(exist_ok=True)
    articles, lines = [], []
    qid = 0
    for name, facts in FACTS.items():
        paragraphs = [
            " ".join(f[0] for f in facts[:2]),
            FILLER * 3,
            " ".join(f[0] for f in facts[2:]),
        ]
        context = "\n\n".join(paragraphs)
        (docs / f"{name}.txt").write_text(context, encoding="utf-8")
        qas = []
        for _, question, answer in facts:
            qid += 1
            qas.append(
                {
                    "id": f"q{qid}",
                    "question": question,
                    "answers": [{"text": answer, "answer_start": context.find(answer)}],
                    "is_impossible": False,
                }
            )
            lines.append(
                json.dumps(
                    {
                        "id": f"q{qid}",
                        "question": question,
                        "answers": [answer],
                        "document": f"{name}.txt",
                    }
                )
            )
        articles.append(
            {"title": name, "paragraphs": [{"context": context, "qas": qas, "document_id": name}]}
        )
    squad = folder / "fixture.json"
    squad.write_text(json.dumps({"version": "test", "data": articles}), encoding="utf-8")
    jsonl = folder / "fixture.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"squad": squad, "jsonl": jsonl, "documents": docs}


# Question sets for drift: one topic family, and one far from it.
_VIRUSES = [
    "SARS-CoV-2",
    "MERS-CoV",
    "influenza A",
    "HIV-1",
    "Ebola virus",
    "dengue virus",
    "measles virus",
    "hepatitis B virus",
    "Zika virus",
    "rotavirus",
    "norovirus",
    "respiratory syncytial virus",
]
_VIRUS_TEMPLATES = [
    "What is the incubation period of {x}?",
    "How is {x} transmitted between people?",
    "Which receptor does {x} use to enter cells?",
    "Is there a vaccine against {x}?",
    "What is the case fatality rate of {x} infection?",
]
_OFF_TOPIC = [
    "pancakes",
    "a sourdough starter",
    "risotto",
    "a chocolate souffle",
    "lasagne",
    "a football match",
    "a tennis racket",
    "a marathon",
    "a mortgage",
    "a car lease",
    "a wedding speech",
    "a garden pond",
]
_OFF_TEMPLATES = [
    "How do I prepare {x} for six people?",
    "What does {x} cost on average?",
    "How long should I plan for {x}?",
    "What is a good alternative to {x}?",
    "Which mistakes do beginners make with {x}?",
]


def virus_questions() -> list[str]:
    return [t.format(x=x) for x in _VIRUSES for t in _VIRUS_TEMPLATES]


def off_topic_questions() -> list[str]:
    return [t.format(x=x) for x in _OFF_TOPIC for t in _OFF_TEMPLATES]


def split_in_two(items: list[str], seed: int = 7) -> tuple[list[str], list[str]]:
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


@pytest.fixture(scope="session")
def fixture_benchmark(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_fixture_benchmark(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="session")
def eval_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(data_dir=tmp_path_factory.mktemp("evaldata") / "data")


def docqa_with(embedder: Any) -> Any:
    """The runner's `open_docqa`: a docqa that reuses the session's embedding model."""
    from app import Docqa

    return lambda settings: Docqa(settings, embedder=embedder)


@pytest.fixture(scope="session")
def stored_run(eval_settings: Settings, fixture_benchmark: dict[str, Path], embedder: Any) -> Any:
    """One run of the fixture benchmark, stored and reported."""
    from evals.runner import run_benchmark

    return run_benchmark(eval_settings, fixture_benchmark["squad"], open_docqa=docqa_with(embedder))
