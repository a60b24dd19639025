"""How a chat's turns are read: background task prompts and follow-up questions."""

from __future__ import annotations

import json

import pytest

from api.chat_turns import background_task, search_query


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("And in 2021?", True),
        ("What does it cost?", True),
        ("How about the Berlin office?", True),
        ("Which of those need a manager's approval?", True),
        ("How many days of paid leave do staff get each year?", False),
        ("What is the reimbursement limit for hotel nights in capital cities?", False),
    ],
)
def test_a_follow_up_is_searched_with_the_question_before_it(question, follow_up):
    turns = [
        ("user", "How are train tickets reimbursed?"),
        ("assistant", "Second class under four hours [1]."),
        ("user", question),
    ]
    query = search_query(turns)
    if follow_up:
        assert query == f"How are train tickets reimbursed?\n{question}"
    else:
        assert query is None


def test_a_first_question_stands_alone():
    assert search_query([("system", "Be brief."), ("user", "And then?")]) is None


def test_only_task_prompts_are_background_tasks():
    assert background_task("What is the task of the safety officer?") is None
    assert background_task("### Task: summarise") is not None
    title = background_task(
        "### Task:\nGenerate a concise, 3-5 word title.\n<chat_history>\n"
        "USER: where is the Copenhagen office located exactly\nASSISTANT: ...\n</chat_history>"
    )
    assert json.loads(title or "") == {"title": "Where is the Copenhagen office located"}
    autocomplete = background_task("### Task:\nYou are an autocompletion system. ...")
    assert json.loads(autocomplete or "") == {"text": ""}
