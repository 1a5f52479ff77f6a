"""A small JSONL corpus for the search backend tests: each test query has exactly one right passage."""

from __future__ import annotations

import json
from pathlib import Path

DOCUMENTS = [
    {"id": "d1", "title": "Paris", "text": "Paris is the capital and largest city of France, on the Seine."},
    {"id": "d2", "title": "Berlin", "text": "Berlin is the capital of Germany and its most populous city."},
    {
        "id": "d3",
        "title": "Photosynthesis",
        "text": "Plants convert light, water and carbon dioxide into glucose.",
    },
    {
        "id": "d4",
        "title": "Mount Everest",
        "text": "Everest is Earth's highest mountain above sea level, in the Himalayas.",
    },
    {
        "id": "d5",
        "title": "Python (language)",
        "text": "Python is a programming language created by Guido van Rossum.",
    },
    {
        "id": "d6",
        "title": "Great Barrier Reef",
        "text": "The largest coral reef system lies off the coast of Queensland.",
    },
]


def write_corpus(path: Path, documents: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    return path
