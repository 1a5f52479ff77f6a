"""One tool-using conversation in every demonstration layout, its tools and a tokenizer for it
(test helpers for the demonstration loaders, the rollout comparison and SFT on data sets)."""

from __future__ import annotations

import json
from typing import Any

from transformers import PreTrainedTokenizerFast

from arpo.core.answer_format import FormatSpec
from arpo.tasks.demonstrations import ResponseProtocol, Segment
from arpo.tasks.toolworld import train_tokenizer
from arpo.tools import Tool, ToolResult

TOOL_TAGS = ("calc", "lookup")
PROTOCOL = ResponseProtocol(tool_tags=TOOL_TAGS)
SYSTEM, QUESTION = "Use the tools.", "What is 12*3 plus the value of x?"
ARGUMENTS = {"key": "x", "n": 2}
"""Arguments of the lookup call: two fields, so the call's body is their JSON."""
LOOKUP_RESULT = f"found {json.dumps(ARGUMENTS)}"
SEGMENTS = (
    Segment("model", "<think>multiply first</think><calc>12*3</calc>"),
    Segment("tool", "36", "calc", "12*3", "ok"),
    Segment("model", "\n<think>then look up x</think><lookup>" + json.dumps(ARGUMENTS) + "</lookup>"),
    Segment("tool", LOOKUP_RESULT, "lookup", json.dumps(ARGUMENTS), "ok"),
    Segment("model", "\n<think>36 + 2</think><answer>38</answer>"),
)
"""The response every layout below holds (the tool results are what :class:`Lookup` and the
calculator return for these calls)."""


class Lookup(Tool):
    """A deterministic tool: echoes its call."""

    tag = "lookup"
    description = "lookup: returns 'found <call>'"

    def run(self, call: str) -> ToolResult:
        return ToolResult(f"found {call}")


def protocol_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer (any text encodes) with the tool tags as single tokens,
    a chat template and ``<|eos|>`` (:func:`arpo.tasks.toolworld.train_tokenizer`)."""
    texts = [SYSTEM, QUESTION, *(s.text for s in SEGMENTS), "Say hello. Hello there!"] * 20
    return train_tokenizer(texts, 400, FormatSpec(tool_tags=TOOL_TAGS))


def messages_row() -> dict[str, Any]:
    """OpenAI chat: arguments as a JSON string and as an object, content null beside tool calls."""
    return {
        "id": "m1",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
            {
                "role": "assistant",
                "content": "<think>multiply first</think>",
                "tool_calls": [
                    {"type": "function", "function": {"name": "calc", "arguments": '{"expression": "12*3"}'}}
                ],
            },
            {"role": "tool", "content": "36"},
            {"role": "assistant", "content": "\n<think>then look up x</think>"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": ARGUMENTS}}],
            },
            {"role": "tool", "content": [{"type": "text", "text": LOOKUP_RESULT}]},
            {"role": "assistant", "content": "\n<think>36 + 2</think><answer>38</answer>\n"},
        ],
    }


def sharegpt_row() -> dict[str, Any]:
    """LLaMA-Factory ShareGPT with function_call / observation turns and a system field."""
    return {
        "system": SYSTEM,
        "conversations": [
            {"from": "human", "value": QUESTION},
            {"from": "gpt", "value": "<think>multiply first</think>"},
            {"from": "function_call", "value": json.dumps({"name": "calc", "arguments": {"expr": "12*3"}})},
            {"from": "observation", "value": "36"},
            {"from": "gpt", "value": "\n<think>then look up x</think>"},
            {"from": "function_call", "value": json.dumps({"name": "lookup", "arguments": ARGUMENTS})},
            {"from": "observation", "value": LOOKUP_RESULT},
            {"from": "gpt", "value": "\n<think>36 + 2</think><answer>38</answer>"},
        ],
    }


def inline_row() -> dict[str, Any]:
    """ARPO-SFT-54K style: the whole trajectory in one gpt value, results inline (whitespace
    between a call's closing tag and its result is dropped)."""
    value = "".join(s.text + "\n" if s.role == "model" else f"<result>{s.text}</result>" for s in SEGMENTS)
    return {
        "conversations": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": value},
        ]
    }


def demo_row() -> dict[str, Any]:
    """The project's demonstration row (:meth:`arpo.tasks.toolworld.Demo.to_row`)."""
    return {
        "task_id": "d1",
        "family": "test",
        "kind": "perfect",
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "answer": ["38"],
        "answer_type": "number",
        "segments": [
            {k: v for k, v in vars(segment).items() if v is not None and k != "call"} for segment in SEGMENTS
        ],
    }


def record_row() -> dict[str, Any]:
    """An ``arpo eval`` sample record of the conversation (the fields the loader reads)."""
    segments = [
        {"role": s.role, "text": s.text if s.role == "model" else f"<result>{s.text}</result>"}
        for s in SEGMENTS
    ]
    return {
        "dataset": "d",
        "task_id": "t1",
        "sample": 0,
        "prompt": "(rendered)",
        "response": "".join(segment["text"] for segment in segments),
        "tool_calls": [
            {"tag": s.tag, "call": s.call, "status": s.status} for s in SEGMENTS if s.role == "tool"
        ],
        "finish_reason": "answer",
        "score": 1.0,
        "correct": True,
        "prompt_messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "segments": segments,
    }
