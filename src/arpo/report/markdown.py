"""A report is a list of blocks (headings, paragraphs, tables, images), rendered two ways: Markdown
(``report.md``, readable on GitHub and in a terminal) and a self-contained HTML page
(``report.html``, same content, images referenced by the same relative paths). Both files are
written atomically.

Inline markup in paragraphs and cells is limited to what both renderings share: ``code`` in
backticks and **bold** in double asterisks.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from arpo.io import atomic_write_text


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    path: str
    """Relative to the report's folder."""
    caption: str


Block = Heading | Paragraph | Table | Image


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant figures, None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block.header, block.rows))
        else:
            parts.append(f"![{block.caption}]({block.path})")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}figure{margin:1em 0}code{background:#f3f3f3;padding:0 .2em}"
)


def to_html(blocks: Sequence[Block], title: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        else:
            src = html.escape(block.path)
            caption = _inline(block.caption)
            body.append(
                f'<figure><img src="{src}" alt="{html.escape(block.caption)}"><figcaption>{caption}</figcaption></figure>'
            )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(blocks: Sequence[Block], folder: str | Path, title: str, name: str = "report") -> Path:
    """Write ``<name>.md`` and ``<name>.html`` into ``folder``; returns the Markdown file."""
    folder = Path(folder)
    atomic_write_text(folder / f"{name}.html", to_html(blocks, title))
    return atomic_write_text(folder / f"{name}.md", to_markdown(blocks))
