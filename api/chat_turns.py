"""What a chat front end's messages mean for docqa, beyond "the last user message".

- Background tasks. Open WebUI asks its model for a chat title, tags, follow-up
  suggestions, search queries and autocompletions, each a prompt starting with
  `### Task:` around the chat history, expecting a small JSON reply. Those are not
  questions about the documents: they are answered here, without retrieval, and never
  recorded as live traffic (they would read as drift).
- Follow-ups. "And in 2021?" or "what does it cost?" mean little alone: when the last
  question leans on the one before, both are searched together.
"""

from __future__ import annotations

import json
import re
from typing import Any

TASK_PREFIX = re.compile(r"^\s*#{2,3}\s*Task:", re.IGNORECASE)
_HISTORY = re.compile(r"<chat_history>(.*?)</chat_history>", re.DOTALL | re.IGNORECASE)
_USER_LINE = re.compile(r"^\s*USER:\s*(.+)$", re.MULTILINE | re.IGNORECASE)

# Words a follow-up uses to point back at the earlier question.
_REFERRING = {
    "it", "its", "they", "them", "their", "this", "that", "these", "those", "he", "she",
    "his", "her", "there", "then", "same", "also", "else", "more", "again", "one", "ones",
}  # fmt: skip
_LEADING = ("and ", "what about", "how about", "and what", "but ", "or ", "then ")
_WORD = re.compile(r"[\w'-]+", re.UNICODE)


def background_task(question: str) -> str | None:
    """The reply to a front end's background task prompt, or None for a real question."""
    if not TASK_PREFIX.match(question):
        return None
    lowered = question.lower()
    if "title" in lowered:
        return json.dumps({"title": _title(question)})
    if "follow-up" in lowered or "follow_ups" in lowered or "follow up" in lowered:
        return json.dumps({"follow_ups": []})
    if "tags" in lowered:
        return json.dumps({"tags": ["Documents"]})
    if "queries" in lowered or "search quer" in lowered:
        # No queries: the front end runs no web search or retrieval of its own; docqa
        # retrieves from the documents when the question itself comes.
        return json.dumps({"queries": []})
    if "autocomplet" in lowered:
        return json.dumps({"text": ""})
    return json.dumps({})


def _title(prompt: str) -> str:
    """A title from the chat's first question: its first words, as the user wrote them."""
    history = _HISTORY.search(prompt)
    users = _USER_LINE.findall(history.group(1) if history else prompt)
    first = users[0] if users else ""
    title = " ".join(_WORD.findall(first)[:6]).strip()
    return title[:1].upper() + title[1:] if title else "Question about the documents"


def search_query(turns: list[tuple[str, str]]) -> str | None:
    """What to retrieve with for the last user turn of `turns` ((role, text) pairs), when
    it is a follow-up of the user turn before it; None when it stands alone."""
    users = [text for role, text in turns if role == "user" and text.strip()]
    if len(users) < 2:
        return None
    last, previous = users[-1], users[-2]
    words = [w.lower() for w in _WORD.findall(last)]
    leans_back = (
        len(words) <= 4
        or any(w in _REFERRING for w in words)
        or last.strip().lower().startswith(_LEADING)
    )
    return f"{previous}\n{last}" if leans_back else None


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    """A message's text: a string, or the text parts of an OpenAI content list."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return content or ""
