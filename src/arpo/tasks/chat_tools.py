"""Native tool calling through the tokenizer's chat template (``rollout.tool_format: chat_template``).

Models tuned for tool use (Qwen2.5/3, Llama 3.x, Hermes fine-tunes, SmolLM3) learned their own
format: tools declared as JSON schemas through ``apply_chat_template(tools=...)``, calls written
in their syntax inside the assistant turn, results given back in ``tool`` messages. In this mode:

* the **prompt** is the chat template's rendering of the task's messages with the tools'
  function schemas (:meth:`arpo.tools.Tool.schema`) and the assistant turn opened;
* an assistant **turn** ends with the end-of-turn (EOS) token. Its text goes through the
  parser (:mod:`arpo.core.tool_parsers`); no call means the turn is the final answer, otherwise
  every call runs (concurrently, through the ToolBox) and the results come back in order;
* the **results** are rendered by the template as the ``tool`` messages that follow that turn,
  up to the next assistant turn's opening, and appended token-exactly: the assistant turn is
  rendered as it was sampled, then with the tool messages and the generation prompt; only the
  text after the turn's EOS is encoded, on its own. A special token (the EOS) ends the sampled
  text, so encoding the rest alone gives the same ids as encoding the whole rendering.

Rendering, not reconstruction: every trajectory's text is the template's rendering of its
conversation (the task's messages, each assistant turn's sampled text, the tool messages).
A template that would render that conversation differently once it goes on — one that rewrites
earlier turns, e.g. drops their reasoning — is not *prefix-preserving*: the trajectory would not
be what the template shows the model at the next turn, and training on it would fit another
sequence. :class:`ChatToolFormat` checks this once, on a probe conversation with reasoning, tool
calls, results and an answer, and refuses such templates with the step that breaks; it also
refuses a template that ignores ``tools`` (SmolLM2-135M-Instruct's, measured: it renders the same
prompt with and without them, so the model would never learn what it can call) and one whose
assistant turn does not end with the EOS token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from arpo.core.tool_parsers import Parser
from arpo.tools.base import arguments_from_text

PROBE: list[dict[str, Any]] = [
    {"role": "user", "content": "What is 6 times 7?"},
    {
        "role": "assistant",
        "content": '<think>use the tool</think><tool_call>{"name": "f", "arguments": {}}</tool_call>',
    },
    {"role": "tool", "name": "f", "content": "42"},
    {"role": "assistant", "content": "<think>done</think>The answer is 42."},
]
"""A conversation on which the template must be prefix-preserving (module docstring)."""


ToolFormatName = Literal["tags", "chat_template"]
TOOL_FORMAT_HELP = (
    "tags: ARPO's <tool>call</tool> protocol; chat_template: the model's native tool calling, tools and "
    "results rendered by its chat template (docs/tools.md)."
)
TOOL_PARSER_HELP = (
    "tool_format chat_template: how calls are read from a turn: hermes (= qwen), llama3_json, or "
    "'package.module:function'."
)


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot be used for native tool calling; the message says why."""


class ChatToolFormat:
    """Prompts and tool-result tokens rendered by the chat template (module docstring)."""

    def __init__(self, tokenizer: Any, tools: Sequence[dict[str, Any]], parser: Parser) -> None:
        self.tokenizer = tokenizer
        self.tools = list(tools)
        self.parse = parser
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if getattr(tokenizer, "chat_template", None) is None:
            raise ChatTemplateError(f"tool_format chat_template: the tokenizer {name} has no chat template")
        if tokenizer.eos_token is None:
            raise ChatTemplateError(f"tool_format chat_template: the tokenizer {name} has no EOS token")
        self.eos_text: str = tokenizer.eos_token
        self.eos_id: int = tokenizer.eos_token_id
        """The token that ends an assistant turn (another end-of-sequence id ends the trajectory)."""
        user = PROBE[:1]
        if self.render(user, True) == self._render(user, True, None):
            raise ChatTemplateError(
                f"tool_format chat_template: the chat template of {name} ignores `tools` (it renders the same "
                "prompt with and without them), so the model would not know what it can call; use "
                "tool_format: tags with the tools described in the system prompt"
            )
        self._check_probe(name)

    def _render(self, messages: Sequence[dict[str, Any]], generation_prompt: bool, tools: Any) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                list(messages), tools=tools, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as exc:  # noqa: BLE001 - jinja's TemplateError and what templates raise themselves
            raise ChatTemplateError(
                f"tool_format chat_template: the chat template failed on a conversation with tool messages "
                f"({type(exc).__name__}: {exc}); it may need fields this format does not give (e.g. tool_call_id)"
            ) from exc

    def render(self, messages: Sequence[dict[str, Any]], generation_prompt: bool) -> str:
        """The template's text of ``messages`` with the tools."""
        return self._render(messages, generation_prompt, self.tools)

    def prompt_ids(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Token ids of the prompt: the messages, the tools and the opened assistant turn."""
        encoded = self.tokenizer.apply_chat_template(
            list(messages), tools=self.tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def turn_end(self, rendered: str) -> int:
        """Where the last assistant turn's EOS ends in a rendering that closes with that turn."""
        cut = rendered.rfind(self.eos_text)
        if cut < 0:
            raise ChatTemplateError(
                f"tool_format chat_template: the chat template does not end an assistant turn with the EOS "
                f"token {self.eos_text!r}, so a sampled turn cannot be continued token-exactly"
            )
        return cut + len(self.eos_text)

    def results_text(self, history: Sequence[dict[str, Any]], results: Sequence[tuple[str, str]]) -> str:
        """The text after ``history``'s last assistant turn (ended by EOS): the ``tool`` messages
        with ``results`` ((tool name, text) in call order) and the next assistant turn's opening."""
        before = self.render(history, False)
        after = self.render(
            [*history, *({"role": "tool", "name": n, "content": t} for n, t in results)], True
        )
        cut = self.turn_end(before)
        if after[:cut] != before[:cut]:
            raise ChatTemplateError(
                "tool_format chat_template: the chat template renders an assistant turn differently once tool "
                "results follow it (not prefix-preserving), so the sampled turn is not what the model would see"
            )
        return after[cut:]

    def results_ids(self, assistant_text: str, results: Sequence[tuple[str, str]]) -> list[int]:
        """Token ids of :meth:`results_text` after an assistant turn whose sampled text (EOS
        excluded) is ``assistant_text``, encoded on their own (module docstring)."""
        history = [*PROBE[:1], {"role": "assistant", "content": assistant_text}]
        text = self.results_text(history, results)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def assistant_ids(
        self, history: Sequence[dict[str, Any]], message: dict[str, Any]
    ) -> tuple[str, list[int]]:
        """An assistant turn as the template renders ``message`` after ``history``: its text (EOS
        excluded, what a rollout decodes from the sampled turn) and token ids (EOS included), for
        SFT; its calls must read back through the parser."""
        before = self.render(history, True)
        after = self.render([*history, message], False)
        if not after.startswith(before):
            raise ChatTemplateError(
                "tool_format chat_template: the chat template renders the conversation differently once an "
                "assistant turn follows it (not prefix-preserving)"
            )
        end = self.turn_end(after)
        text = after[len(before) : end - len(self.eos_text)]
        expected = [
            (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])
        ]
        parsed = [(c.name, c.arguments) for c in self.parse(text) if c.error is None]
        if parsed != expected:
            raise ChatTemplateError(
                f"tool_format chat_template: the tool parser reads {parsed} from the chat template's rendering "
                f"of the calls {expected} ({text!r}): choose the parser of this template (rollout.tool_parser)"
            )
        return text, list(self.tokenizer.encode(after[len(before) : end], add_special_tokens=False))

    def assistant_message(self, text: str, call: tuple[str, str] | None) -> dict[str, Any]:
        """The chat message of a demonstration's model segment in the tag protocol: ``text`` before
        the call's opening tag is the content, and ``call`` (tag, the text between the tags)
        becomes a function call whose arguments the tool's schema gives (the one parameter's
        value, or a JSON object)."""
        if call is None:
            return {"role": "assistant", "content": text}
        tag, body = call
        start = text.rfind(f"<{tag}>")
        content = text[:start] if start >= 0 else text
        schemas = {tool["function"]["name"]: tool["function"].get("parameters", {}) for tool in self.tools}
        if tag not in schemas:
            raise ValueError(f"a demonstration calls {tag!r}, which is not among the tools {sorted(schemas)}")
        try:
            arguments = arguments_from_text(schemas[tag], body)
        except ValueError as exc:
            raise ValueError(f"the call of {tag} ({body!r}): {exc}") from None
        function = {"name": tag, "arguments": arguments}
        return {
            "role": "assistant",
            "content": content,
            "tool_calls": [{"type": "function", "function": function}],
        }

    def _check_probe(self, name: str) -> None:
        """Refuse a template that is not prefix-preserving on :data:`PROBE` (module docstring)."""
        prompt = self.render(PROBE[:1], True)
        first = self.render(PROBE[:2], False)
        if not first.startswith(prompt):
            raise ChatTemplateError(
                f"tool_format chat_template: the chat template of {name} does not render an assistant turn after "
                "its generation prompt (the prompt is not a prefix of the prompt plus the turn)"
            )
        with_results = (
            prompt + first[len(prompt) : self.turn_end(first)] + self.results_text(PROBE[:2], [("f", "42")])
        )
        whole = self.render(PROBE, False)
        if not whole.startswith(with_results):
            raise ChatTemplateError(
                f"tool_format chat_template: the chat template of {name} rewrites earlier turns once the "
                "conversation goes on (e.g. drops their reasoning), so a trajectory is not what the model sees "
                "at its next turn: not prefix-preserving"
            )
