"""The searchable corpus: one short passage per entity, as JSONL rows ``{id, title, text}``.

A passage's title is the entity's name and its text lists the entity's facts in the order of
:data:`~arpo.tasks.toolworld.knowledge.ATTRIBUTES`::

    {"id": "doc-00017", "title": "Vemo", "text": "town, population 48213, founding year 1532, mayor Tarak"}

The search tool shows it as ``Page 1: Vemo: town, population 48213, ...``. The query of a lookup
(``mayor of Vemo``) shares the entity's name and the attribute's words with exactly one passage,
so BM25 ranks that passage first. Passages of both worlds are sorted by title, so the corpus
order reveals nothing about the split.
"""

from __future__ import annotations

import re

from arpo.tasks.toolworld.knowledge import ATTRIBUTES, Entity, World


def passage_text(entity: Entity) -> str:
    return ", ".join(
        [entity.kind, *(f"{name} {entity.facts[name]}" for name in ATTRIBUTES if name in entity.facts)]
    )


def corpus_rows(worlds: list[World]) -> list[dict[str, str]]:
    """Every entity of ``worlds`` as a passage, sorted by title."""
    entities = sorted((e for world in worlds for e in world.entities.values()), key=lambda e: e.name)
    return [
        {"id": f"doc-{index:05d}", "title": entity.name, "text": passage_text(entity)}
        for index, entity in enumerate(entities)
    ]


def read_fact(search_result: str, entity: str, attribute: str) -> str | None:
    """The value of ``attribute`` in the page titled ``entity`` of a search result, or None."""
    page = re.search(rf"^Page \d+: {re.escape(entity)}: (.*)$", search_result, flags=re.MULTILINE)
    if page is None:
        return None
    fact = re.search(rf"(?:^|, ){re.escape(attribute)} (\w+)(?:,|$)", page.group(1))
    return None if fact is None else fact.group(1)
