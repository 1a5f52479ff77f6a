"""Native tool-call parsers: Hermes/Qwen ``<tool_call>`` JSON and Llama 3 JSON, malformed calls."""

from __future__ import annotations

import pytest

from arpo.core.tool_parsers import ParsedCall, get_parser, parse_hermes, parse_llama3_json


def test_hermes_reads_every_call_in_order_and_reports_malformed_ones():
    text = (
        '<think>two lookups</think><tool_call>{"name": "search", "arguments": {"query": "Vemo"}}</tool_call>\n'
        '<tool_call>{"name": "python", "arguments": "{\\"code\\": \\"print(1)\\"}"}</tool_call>'
        "<tool_call>{name: python}</tool_call>"
        '<tool_call>{"arguments": {}}</tool_call>'
        '<tool_call>{"name": "calc", "arguments": [1]}</tool_call>'
        '<tool_call>{"name": "calc"'
    )
    calls = parse_hermes(text)
    assert calls[:2] == [
        ParsedCall("search", {"query": "Vemo"}),
        ParsedCall("python", {"code": "print(1)"}),
    ]
    assert [c.error is not None for c in calls] == [False, False, True, True, True, True]
    assert "not JSON" in calls[2].error and '"name"' in calls[3].error
    assert "must be a JSON object" in calls[4].error and "not closed" in calls[5].error
    assert parse_hermes("<answer>42</answer>") == []


def test_llama3_json_reads_one_or_several_calls_and_plain_answers():
    assert parse_llama3_json(
        '<|python_tag|>{"name": "calc", "parameters": {"expression": "1+2"}}<|eom_id|>'
    ) == [ParsedCall("calc", {"expression": "1+2"})]
    two = '{"name": "a", "parameters": {}}; {"name": "b", "arguments": {"x": 1}}'
    assert parse_llama3_json(two) == [ParsedCall("a", {}), ParsedCall("b", {"x": 1})]
    assert parse_llama3_json("The answer is 3.") == []
    (bad,) = parse_llama3_json('{"name": "a", ')
    assert bad.error is not None and "not JSON" in bad.error


def test_parsers_by_name_or_import_path():
    assert get_parser("qwen") is parse_hermes
    assert get_parser("arpo.core.tool_parsers:parse_llama3_json") is parse_llama3_json
    with pytest.raises(ValueError, match="unknown tool parser 'mistral'"):
        get_parser("mistral")
