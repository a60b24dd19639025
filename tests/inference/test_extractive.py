"""The extractive answerer quotes the best sentences, each tied to its citation, and says
plainly when the documents do not hold the answer."""

from __future__ import annotations

from docqa.domain import NOT_FOUND_ANSWER, Chunk, ScoredChunk
from docqa.settings import AnswerSettings
from inference.extractive import ExtractiveGenerator, split_sentences


def _hit(cid: str, text: str, page: int | None = None, rank: int = 1) -> ScoredChunk:
    return ScoredChunk(
        Chunk(cid, "doc_1", text, 0, "manual.pdf", "pdf", page=page, section="Safety"),
        score=1 / rank,
        relevance=0.6,
    )


def test_sentence_splitter_respects_abbreviations():
    text = (
        "Results are in Fig. 3 of the paper. Smith et al. agree. See e.g. the appendix!\nNext line"
    )
    assert split_sentences(text) == [
        "Results are in Fig. 3 of the paper.",
        "Smith et al. agree.",
        "See e.g. the appendix!",
        "Next line",
    ]


def test_answer_quotes_the_answering_sentence_with_page_citation(embedder):
    gen = ExtractiveGenerator(embedder, AnswerSettings())
    context = [
        _hit(
            "c1",
            "The lab opened in 1998. Protective goggles must be worn when handling acids. "
            "The canteen closes at three.",
            page=4,
        ),
        _hit("c2", "Quarterly figures were published in May.", page=9, rank=2),
    ]
    answer = gen.generate("Do I need goggles when handling acid?", context)
    assert answer.found
    assert answer.text.startswith("Protective goggles must be worn when handling acids. [1]")
    first = answer.citations[0]
    assert (first.chunk_id, first.page, first.source, first.section) == (
        "c1",
        4,
        "manual.pdf",
        "Safety",
    )
    assert "Protective goggles" in first.text
    assert len({c.chunk_id for c in answer.citations}) == len(answer.citations)


def test_every_citation_marker_points_at_a_listed_citation(embedder):
    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=3))
    context = [
        _hit("c1", "Backups run every night at two. Backups are kept for 35 days."),
        _hit("c2", "Restores are tested monthly by the backup team.", rank=2),
    ]
    answer = gen.generate("How long are backups kept and when do backups run?", context)
    import re

    markers = {int(m) for m in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers == set(range(1, len(answer.citations) + 1))


def test_definition_questions_prefer_the_defining_sentence(embedder):
    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=1))
    context = [
        _hit(
            "c1",
            "Zephyr comes with many utilities for storage. "
            "This paper introduces Zephyr, an open-source library for layout analysis.",
        )
    ]
    answer = gen.generate("What is Zephyr?", context)
    assert "an open-source library" in answer.text


def test_nothing_relevant_retrieved_means_a_plain_not_found(dq, tmp_path):
    doc = tmp_path / "boiler.md"
    doc.write_text("# Boiler\n\nThe boiler is serviced every October by the facilities team.\n")
    dq.indexer().ingest_file(doc)
    answer = dq.answering.ask("What is the capital of Mongolia?")
    assert not answer.found
    assert answer.text == NOT_FOUND_ANSWER
    assert answer.citations == []
    found = dq.answering.ask("When is the boiler serviced?")
    assert found.found and "October" in found.text
    assert set(found.timings_ms) >= {"retrieve", "generate", "total"}


def test_empty_index_answers_not_found(dq):
    assert not dq.answering.ask("anything at all?").found


def test_a_title_is_not_quoted_when_a_sentence_answers(embedder):
    gen = ExtractiveGenerator(embedder, AnswerSettings())
    context = [
        _hit(
            "c1",
            "First Complete Genome Sequence of a French Bovine Coronavirus Strain\n"
            "The genome of the bovine coronavirus strain is 31 kb long.",
        )
    ]
    answer = gen.generate("What is the size of bovine coronavirus?", context)
    assert answer.text.startswith("The genome of the bovine coronavirus strain is 31 kb long.")
    assert "First Complete" not in answer.text


def test_a_title_alone_is_still_quoted(embedder):
    gen = ExtractiveGenerator(embedder, AnswerSettings())
    answer = gen.generate(
        "What is the bovine coronavirus genome sequence?",
        [_hit("c1", "First Complete Genome Sequence of a French Bovine Coronavirus Strain")],
    )
    assert answer.found and answer.text.startswith("First Complete Genome Sequence")


def test_sentence_embeddings_are_reused_across_questions(embedder):
    calls: list[int] = []

    class Counting:
        def __getattr__(self, name):
            return getattr(embedder, name)

        def embed_documents(self, texts):
            calls.append(len(texts))
            return embedder.embed_documents(texts)

    gen = ExtractiveGenerator(Counting(), AnswerSettings())  # type: ignore[arg-type]
    context = [_hit("c1", "Goggles must be worn. The canteen closes at three.")]
    first = gen.generate("Do I need goggles?", context)
    second = gen.generate("Do I need goggles?", context)
    assert calls == [2]
    assert first.text == second.text


def test_quotes_join_words_a_line_end_hyphen_cut(embedder):
    # Chunks indexed before ingestion joined cut words still quote them whole.
    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=1))
    context = [_hit("c1", "Layout models have many applica-\ntions in digitisation of archives.")]
    answer = gen.generate("What do layout models have many of?", context)
    assert "applications in digitisation" in answer.text
    assert "applications" in answer.citations[0].text
