"""The search tool (tag ``search``) and the interface of its backends.

``<search>query</search>`` goes to one backend: ``bm25`` (a local corpus), ``replay`` (a
recorded query -> result file), ``http`` (a web-search API). Backends that find passages format
them the way the ARPO authors' tool did, so recorded results and live ones look alike::

    Page 1: <title>: <snippet>
    Page 2: ...

The query is stripped of surrounding whitespace and of double quotes (as the authors' tool did);
an empty query is an ``error``. Backend counters (hits, misses, requests...) are exposed through
:meth:`SearchTool.metrics`.
"""

from __future__ import annotations

import os
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from arpo.tools.base import Tool, ToolResult, ToolStatus

NO_RESULTS = "No search results found."


@dataclass(frozen=True)
class Passage:
    """One hit: a title and the text shown for it."""

    title: str
    text: str


def default_cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/arpo/<kind>`` (``~/.cache/arpo/<kind>`` by default), for indexes and caches."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "arpo" / kind


def normalize_query(query: str) -> str:
    """Case-, width- and punctuation-insensitive form of a query, used as a cache key.

    NFKC, lower case, every run of characters other than letters and digits becomes one space.
    """
    text = unicodedata.normalize("NFKC", query).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def format_passages(passages: list[Passage], snippet_chars: int) -> str:
    """``Page i: title: snippet`` lines (snippets cut to ``snippet_chars``), or :data:`NO_RESULTS`."""
    if not passages:
        return NO_RESULTS
    lines = []
    for number, passage in enumerate(passages, start=1):
        snippet = " ".join(passage.text.split())
        if len(snippet) > snippet_chars:
            snippet = snippet[: snippet_chars - 1].rstrip() + "…"
        title = " ".join(passage.title.split())
        lines.append(f"Page {number}: {title}: {snippet}" if title else f"Page {number}: {snippet}")
    return "\n".join(lines)


class SearchBackend(ABC):
    """Answers one cleaned, non-empty query. Must be safe to call from several threads."""

    source: str
    """A few words for the tool description, e.g. ``"a local document collection"``."""

    @abstractmethod
    def search(self, query: str) -> ToolResult: ...

    def metrics(self) -> dict[str, int]:
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook, deliberately empty by default)
        """Release files and connections; the default holds none."""


class SearchTool(Tool):
    """``<search>query</search>`` answered by a :class:`SearchBackend`."""

    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "The search query."}},
        "required": ["query"],
    }

    def __init__(self, backend: SearchBackend, tag: str = "search") -> None:
        self.tag = tag
        self.backend = backend
        self.description = (
            f"{tag}: searches {backend.source} for the query written between <{tag}> and </{tag}> "
            "and returns the best matching passages as 'Page i: title: text' lines."
        )
        self.function_description = f"Searches {backend.source} and returns the best matching passages as 'Page i: title: text' lines."
        super().__init__()

    def run(self, call: str) -> ToolResult:
        query = call.replace('"', "").strip()
        if not query:
            return ToolResult("error: empty search query", ToolStatus.ERROR)
        return self.backend.search(query)

    def metrics(self) -> dict[str, int]:
        return self.backend.metrics()

    def close(self) -> None:
        self.backend.close()
