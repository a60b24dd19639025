"""Words a line-end hyphen cut are made whole; real hyphens stay."""

from __future__ import annotations

import pytest

from docqa.text import dehyphenate, vocabulary


@pytest.mark.parametrize(
    "cut, whole",
    [
        ("new applica- tions of it", "new applications of it"),
        ("the tis-\nsues were", "the tissues were"),
        ("a mil-  \n  lion cases", "a million cases"),
    ],
)
def test_a_word_cut_at_a_line_end_is_joined(cut, whole):
    assert dehyphenate(cut) == whole


@pytest.mark.parametrize(
    "text",
    [
        "pre- and post-processing",
        "low- or middle-income countries",
        "COVID- 19 cases",
        "a well-known fact",
        "Section 3 - results",
    ],
)
def test_a_hyphen_that_belongs_to_the_text_stays(text):
    assert dehyphenate(text) == text


def test_a_compound_written_elsewhere_with_its_hyphen_keeps_it():
    known = vocabulary(["This is a well-known result.", "Another line."])
    assert dehyphenate("a well- known method", known) == "a well-known method"
    assert dehyphenate("a well- known method") == "a wellknown method"


def test_the_joined_form_wins_when_the_document_uses_it():
    known = vocabulary(["co-infection", "coinfection is common"])
    assert dehyphenate("co- infection", known) == "coinfection"
