"""Build a response's segments from a data row, holding it to what a rollout can produce.

Text is added in order: model text, tool calls and tool results. The rules are the rollout's
(:mod:`arpo.rollout`), so every accepted response is one the rollout loop could have recorded:

- a model turn ends at its first stop string (a tool's closing tag or the answer's closing tag):
  model text after one is an error, except whitespace, which is dropped (the rollout stops
  generating right at the tag);
- a tool result follows a model turn that ends with the closing tag of a tool in ``tool_tags``;
  the call is the text after the last opening tag before it (:func:`~arpo.core.answer_format.extract_call`);
  a closing tag with no opening tag is an error, and so is a result after anything else (a call
  of a tool not in ``tool_tags`` included: the rollout neither stops at nor runs it);
- in *inline* text (chat layouts), each ``result_template`` part (``<result>…</result>``: the text
  between the template's prefix and the first suffix after it) is a tool result;
- the response ends with model text: a final tool call without its result, a tool result with no
  reply after it, and a response without any model text are errors.

Errors are :class:`~arpo.tasks.errors.TaskLoadError`\\ s naming the file, the row and the field
whose text broke the rule.
"""

from __future__ import annotations

from arpo.core.answer_format import extract_call
from arpo.tasks.demonstrations.conversation import ResponseProtocol, Segment
from arpo.tasks.layouts import RowReader


class ResponseBuilder:
    """The segments of one response, added piece by piece (module docstring)."""

    def __init__(self, protocol: ResponseProtocol, row: RowReader) -> None:
        self.protocol = protocol
        self.row = row
        self.done: list[Segment] = []
        self.text = ""
        """The model segment being written."""

    def add_text(self, text: str, field: str, *, inline: bool) -> None:
        """Model text; with ``inline``, its result-template parts become tool results."""
        before, after = self.protocol.result_parts
        while inline and (start := text.find(before)) >= 0:
            end = text.find(after, start + len(before))
            if end < 0:
                raise self.row.error(field, f"{before!r} at character {start} is not closed by {after!r}")
            self._append(text[:start], field)
            self.add_result(text[start + len(before) : end], field)
            text = text[end + len(after) :]
        self._append(text, field)

    def add_call(self, tag: str, body: str, field: str) -> None:
        """A tool call ``<tag>body</tag>`` written by the model."""
        if tag not in self.protocol.tool_tags:
            raise self.row.error(
                field,
                f"unknown tool {tag!r}: the rollout stops at and runs only the tools of tool_tags "
                f"{list(self.protocol.tool_tags)} (add it there if the RL run has it)",
            )
        self._append(f"<{tag}>{body}</{tag}>", field)

    def add_result(self, text: str, field: str, status: str = "ok") -> None:
        """A tool's result (unwrapped) for the call the model turn so far ends with."""
        turn = self.text.rstrip()
        tag = next((t for close, t in self.protocol.closing_tags.items() if turn.endswith(close)), None)
        if tag is None:
            raise self.row.error(
                field,
                "a tool result must follow a tool call, but the model's text before it does not end with "
                f"the closing tag of a tool in tool_tags {list(self.protocol.tool_tags)} "
                + (f"(it ends …{turn[-40:]!r})" if turn else "(there is none)"),
            )
        call = extract_call(turn, tag)
        if call is None:
            raise self.row.error(field, f"</{tag}> has no <{tag}> before it in the same model turn")
        self.done += [Segment("model", turn), Segment("tool", text, tag, call, status)]
        self.text = ""

    def segments(self, field: str) -> tuple[Segment, ...]:
        """The finished response; ``field`` is named when it ends wrongly."""
        turn = self.text.rstrip()
        stop = self._stop_in(turn)
        if stop is not None and stop != self.protocol.answer_close_tag:
            raise self.row.error(field, f"the response ends with a tool call ({stop}) and no result")
        if self.done and not turn.strip():
            raise self.row.error(
                field, "the response ends with a tool result: the model's reply after it is missing"
            )
        last = Segment("model", turn if stop is not None else self.text)
        if not any(s.role == "model" and s.text.strip() for s in [*self.done, last]):
            raise self.row.error(field, "no model text after the last user message: nothing to learn")
        return (*self.done, last)

    def _append(self, text: str, field: str) -> None:
        """Add model text to the current turn; it must not go on past a stop string."""
        combined = self.text + text
        stop = self._stop_in(combined)
        if stop is not None and combined[combined.find(stop) + len(stop) :].strip():
            raise self.row.error(
                field,
                f"text after {stop}: a rollout's model turn stops there"
                + (", and the tool's result comes next" if stop != self.protocol.answer_close_tag else ""),
            )
        self.text = combined

    def _stop_in(self, text: str) -> str | None:
        """The stop string that occurs first in ``text``, or None."""
        found = [(text.find(stop), stop) for stop in self.protocol.stop_strings if stop in text]
        return min(found)[1] if found else None
