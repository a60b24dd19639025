"""The extractive answerer quotes the best sentences, each tied to its citation, and says
plainly when the documents do not hold the answer."""

from __future__ import annotations

from docqa.domain import NOT_FOUND_ANSWER, Chunk, ScoredChunk
from docqa.settings import AnswerSettings
from docqa.text import split_sentences
from inference import extractive
from inference.extractive import ExtractiveGenerator
from tests.fakes.counting import CountingEmbedder


def _hit(
    cid: str, text: str, page: int | None = None, rank: int = 1, source: str = "manual.pdf"
) -> ScoredChunk:
    return ScoredChunk(
        Chunk(cid, "doc_1", text, 0, source, "pdf", page=page, section="Safety"),
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


def test_quotes_of_a_passage_read_in_its_order(embedder, monkeypatch):
    # Every sentence scores near enough to follow; the best one is the passage's second.
    monkeypatch.setattr(extractive, "FOLLOWER_RATIO", 0.0)
    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=2))
    context = [_hit("c1", "Backups are kept for 35 days. They are stored offsite in a bank vault.")]
    answer = gen.generate("Where are backups stored offsite, in a vault?", context)
    assert answer.text == (
        "Backups are kept for 35 days. [1] They are stored offsite in a bank vault. [1]"
    )
    assert answer.citations[0].text == (
        "Backups are kept for 35 days. … They are stored offsite in a bank vault."
    )


def test_reading_order_keeps_the_best_passage_first():
    picked = [
        extractive._Candidate(1, "b3", position=3),
        extractive._Candidate(0, "a1", position=1),
        extractive._Candidate(1, "b0", position=0),
    ]
    assert [c.sentence for c in extractive.reading_order(picked)] == ["b0", "b3", "a1"]


def test_further_sentences_come_from_the_lead_sentences_document(embedder, monkeypatch):
    monkeypatch.setattr(extractive, "FOLLOWER_RATIO", 0.0)
    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=3))
    context = [
        _hit("c1", "Backups are kept for 35 days. Backups run every night at two."),
        _hit("c2", "Backups are kept on tape in the other company.", source="other.pdf", rank=2),
        _hit("c3", "Backups are verified each week.", rank=3),
    ]
    answer = gen.generate("How long are backups kept?", context)
    assert answer.found and len(answer.citations) >= 2
    assert len({c.source for c in answer.citations}) == 1


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


_FILLER = [
    "The committee met on a Tuesday in the old library building.",
    "Several members travelled from the northern provinces by train.",
    "Coffee and biscuits were served during the afternoon break.",
    "The minutes of the previous meeting were read aloud and signed.",
    "A new projector had been installed in the main hall that week.",
    "The treasurer circulated a printed summary of the accounts.",
]


def test_the_answerer_embeds_at_most_the_configured_number_of_sentences(embedder):
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings(embedded_sentences=4))  # type: ignore[arg-type]
    context = [_hit(f"c{i}", " ".join(_FILLER), rank=i + 1) for i in range(3)]
    context.append(_hit("c9", "Backups are kept for 35 days on tape.", rank=4))
    answer = gen.generate("How long are backups kept?", context)
    assert sum(len(b) for b in counting.batches) <= 4
    assert answer.text.startswith("Backups are kept for 35 days on tape.")


def test_every_sentence_is_embedded_when_the_shortlist_is_off(embedder):
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings(embedded_sentences=0))  # type: ignore[arg-type]
    gen.generate("Who signed the minutes?", [_hit("c1", " ".join(_FILLER))])
    assert sorted(s for b in counting.batches for s in b) == sorted(_FILLER)


def test_sentences_are_embedded_in_small_batches_of_similar_length(embedder):
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings(embedded_sentences=0))  # type: ignore[arg-type]
    long = "The treasurer also explained at length, with many printed tables, the accounts."
    gen.generate("Who spoke?", [_hit("c1", " ".join([*_FILLER, long]))])
    assert all(len(b) <= extractive.EMBED_BATCH for b in counting.batches)
    # The long sentence shares a batch with the longest others, not with the shortest.
    shortest = min(_FILLER, key=len)
    assert not any(long in b and shortest in b for b in counting.batches)


def test_a_long_sentence_is_embedded_by_its_opening_and_quoted_whole(embedder):
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings(max_sentences=1))  # type: ignore[arg-type]
    tail = ", and ".join(f"the {w} reserve was counted twice" for w in _FILLER[0].split())
    sentence = f"Backups are kept for 35 days on tape, {tail}."
    answer = gen.generate("How long are backups kept?", [_hit("c1", sentence)])
    cap = extractive.EMBED_CHARS
    assert cap is not None and len(sentence) > cap
    assert [len(t) <= cap for b in counting.batches for t in b] == [True]
    assert answer.text.startswith(sentence[:200])


def test_a_sentence_with_the_answer_but_few_question_words_is_found_in_the_shortlist(
    embedder, monkeypatch
):
    monkeypatch.setattr(extractive, "LOW_OVERLAP", 0.0)  # the shortlist is never widened
    # Of nine sentences three are embedded: the answer (one question word, "stored"), a
    # sentence of the last passage with another ("backups") that answers nothing, and the
    # best of the rest by passage rank. Similarity then picks the answer.
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings(embedded_sentences=3, max_sentences=1))  # type: ignore[arg-type]
    context = [
        _hit("c1", f"{_FILLER[0]} Copies of every disk are stored for 35 days. {_FILLER[1]}"),
        _hit("c2", " ".join(_FILLER[2:5]), rank=2),
        _hit("c3", f"{_FILLER[5]} The backups team moved to the second floor.", rank=3),
    ]
    answer = gen.generate("How long are the backups stored?", context)
    assert sum(len(b) for b in counting.batches) == 3
    assert answer.text.startswith("Copies of every disk are stored for 35 days.")


def test_a_question_in_other_words_than_the_passages_widens_the_shortlist(embedder):
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, AnswerSettings(embedded_sentences=2))  # type: ignore[arg-type]
    context = [_hit("c1", " ".join(_FILLER[:3])), _hit("c2", " ".join(_FILLER[3:]), rank=2)]
    gen.generate("Which group gathered during the week?", context)
    embedded = sum(len(b) for b in counting.batches)
    assert embedded == min(2 * extractive.WIDER, len(_FILLER)) > 2


def test_a_sentence_that_matches_the_question_word_by_word_is_preferred(embedder):
    """With late interaction on, retrieval hands each sentence's word match with the
    question to the answerer, and it can outweigh the sentence vectors' choice."""
    import numpy as np

    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=1))
    text = "The filter is cleaned every month. The pump is replaced every two years."
    question = "How often is the filter cleaned?"
    plain = gen.generate(question, [_hit("c1", text)])
    assert "filter is cleaned" in plain.text
    hit = _hit("c1", text)
    hit.sentence_matches = np.array([0.0, 1.0], dtype=np.float32)
    assert "pump is replaced" in gen.generate(question, [hit]).text


def test_a_question_asking_for_a_figure_prefers_a_sentence_that_holds_one(embedder, monkeypatch):
    from inference.extractive import asks_figure

    assert asks_figure("How many backups are kept?")
    assert asks_figure("What is the default timeout of a session?")
    assert not asks_figure("What is a backup?")
    gen = ExtractiveGenerator(embedder, AnswerSettings(max_sentences=1))
    context = [_hit("c1", "Backups are kept on the backup server. Backups are kept 35 days.")]
    question = "How many days are backups kept on the server?"
    monkeypatch.setattr(extractive, "W_ANSWER_TYPE", 0.0)
    assert "35 days" not in gen.generate(question, context).text
    monkeypatch.setattr(extractive, "W_ANSWER_TYPE", 0.12)
    assert "35 days" in gen.generate(question, context).text


def test_a_sentence_that_continues_the_best_one_is_quoted_with_it():
    from inference.extractive import _Candidate, _quote_continuation

    best = _Candidate(0, "The RBD vaccine protected the mice.", position=2)
    after = _Candidate(0, "This protection lasted three weeks.", position=3)
    other = _Candidate(1, "This clinic opens at nine.", position=3)  # another passage
    f1, f2 = _Candidate(0, "Mice were housed in pairs.", 0), _Candidate(0, "Doses were 5 ug.", 5)

    picked = [best]
    _quote_continuation(picked, [best, after, other], max_sentences=3)
    assert picked == [best, after]
    # A full answer gives its weakest follower's place to it; the best one stays.
    picked = [best, f1, f2]
    _quote_continuation(picked, [best, f1, f2, after], max_sentences=3)
    assert picked == [best, f1, after]
    picked = [best]
    _quote_continuation(picked, [best, after], max_sentences=1)
    assert picked == [best]
    # A next sentence that does not point back, or one already quoted, changes nothing.
    plain = _Candidate(0, "Ferrets were not tested.", position=3)
    picked = [best]
    _quote_continuation(picked, [best, plain], max_sentences=3)
    assert picked == [best]
    picked = [best, after]
    _quote_continuation(picked, [best, after], max_sentences=3)
    assert picked == [best, after]


def test_a_continuation_already_quoted_from_the_overlapping_chunk_is_not_quoted_twice():
    from inference.extractive import _Candidate, _quote_continuation

    best = _Candidate(0, "The RBD vaccine protected the mice.", position=2)
    after = _Candidate(0, "This protection lasted three weeks.", position=3)
    # The next chunk overlaps this one: its first sentence is the same, already a follower.
    overlap = _Candidate(1, "This protection lasted three weeks.", position=0)
    picked = [best, overlap]
    _quote_continuation(picked, [best, after, overlap], max_sentences=3)
    assert picked == [best, overlap]
