"""Native tool calling through a chat template: prompts with the tools, token-exact results,
demonstrations rendered as a rollout renders them, and templates that cannot be used refused."""

from __future__ import annotations

import pytest
from tests.tasks.chat_template_helpers import HERMES_TEMPLATE, hermes_tokenizer

from arpo.core.tool_parsers import parse_hermes
from arpo.tasks.chat_tools import ChatTemplateError, ChatToolFormat
from arpo.tasks.demonstrations import Conversation, Segment
from arpo.tasks.demonstrations.conversation import chat_conversation_tree
from arpo.tasks.record import ChatMessage
from arpo.tools import Calculator, PythonTool, ToolBox


@pytest.fixture(scope="module")
def tokenizer(toolworld, tmp_path_factory):
    return hermes_tokenizer(toolworld.tokenizer, tmp_path_factory.mktemp("hermes"))


@pytest.fixture(scope="module")
def schemas():
    with ToolBox([Calculator(), PythonTool()]) as box:
        return box.schemas()


def test_prompt_holds_the_tools_and_results_follow_token_exactly(tokenizer, schemas):
    chat = ChatToolFormat(tokenizer, schemas, parse_hermes)
    messages = [{"role": "user", "content": "What is 6*7?"}]
    prompt = chat.prompt_ids(messages)
    text = tokenizer.decode(prompt)
    assert (
        text
        == "<|system|>Tools: <tools>calc(expression) python(code) </tools><|user|>What is 6*7?<|assistant|>"
    )
    turn = (
        '<think>multiply</think><tool_call>{"name": "calc", "arguments": {"expression": "6*7"}}</tool_call>'
    )
    ids = chat.results_ids(turn, [("calc", "42"), ("python", "1")])
    assert (
        tokenizer.decode(ids)
        == "<|user|><tool_response>42</tool_response><tool_response>1</tool_response><|assistant|>"
    )
    # the whole conversation, encoded at once, equals the pieces encoded apart
    conversation = [
        *messages,
        {"role": "assistant", "content": turn},
        {"role": "tool", "name": "calc", "content": "42"},
        {"role": "tool", "name": "python", "content": "1"},
        {"role": "assistant", "content": "<answer>42</answer>"},
    ]
    answer = tokenizer.encode("<answer>42</answer><|eos|>", add_special_tokens=False)
    pieces = prompt + tokenizer.encode(turn + "<|eos|>", add_special_tokens=False) + ids + answer
    assert pieces == tokenizer.encode(chat.render(conversation, False), add_special_tokens=False)


def test_a_demonstration_renders_as_the_template_renders_its_conversation(tokenizer, schemas):
    chat = ChatToolFormat(tokenizer, schemas, parse_hermes)
    conversation = Conversation(
        "d1",
        (ChatMessage("user", "What is 6*7?"),),
        (
            Segment("model", "<think>multiply</think><calc>6*7</calc>"),
            Segment("tool", "42", tag="calc", call="6*7", status="ok"),
            Segment("model", "<think>done</think><answer>42</answer>"),
        ),
    )
    (trajectory,) = chat_conversation_tree(conversation, chat).trajectories()
    messages = [
        {"role": "user", "content": "What is 6*7?"},
        {
            "role": "assistant",
            "content": "<think>multiply</think>",
            "tool_calls": [
                {"type": "function", "function": {"name": "calc", "arguments": {"expression": "6*7"}}}
            ],
        },
        {"role": "tool", "name": "calc", "content": "42"},
        {"role": "assistant", "content": "<think>done</think><answer>42</answer>"},
    ]
    assert trajectory.token_ids == tokenizer.encode(chat.render(messages, False), add_special_tokens=False)
    model_text = tokenizer.decode(
        [t for t, m in zip(trajectory.token_ids, trajectory.loss_mask, strict=True) if m]
    )
    assert model_text == (
        '<think>multiply</think><tool_call>{"name": "calc", "arguments": {"expression": "6*7"}}</tool_call><|eos|>'
        "<think>done</think><answer>42</answer><|eos|>"
    )
    search = (Segment("model", "<search>x</search>"), Segment("tool", "r", tag="search", call="x"))
    with pytest.raises(ValueError, match="d2: .*'search', which is not among the tools"):
        chat_conversation_tree(
            Conversation("d2", conversation.prompt, (*search, conversation.segments[2])), chat
        )


def test_templates_that_cannot_be_used_are_refused_with_the_reason(tokenizer, schemas, toolworld, tmp_path):
    rewrites = HERMES_TEMPLATE.replace(
        "<|assistant|>{{ message['content'] or '' }}",
        "<|assistant|>{{ (message['content'] or '').split('</think>')[-1] if not loop.last else message['content'] }}",
    )
    with pytest.raises(ChatTemplateError, match="not prefix-preserving"):
        ChatToolFormat(hermes_tokenizer(toolworld.tokenizer, tmp_path / "a", rewrites), schemas, parse_hermes)
    no_eos = HERMES_TEMPLATE.replace("{{ eos_token }}", "\n")
    with pytest.raises(ChatTemplateError, match="does not end an assistant turn with the EOS"):
        ChatToolFormat(hermes_tokenizer(toolworld.tokenizer, tmp_path / "b", no_eos), schemas, parse_hermes)
    with pytest.raises(ChatTemplateError, match="ignores `tools`"):
        ChatToolFormat(
            hermes_tokenizer(toolworld.tokenizer, tmp_path / "c", toolworld_template()), schemas, parse_hermes
        )


def toolworld_template() -> str:
    from arpo.tasks.toolworld.tokenizer import CHAT_TEMPLATE

    return CHAT_TEMPLATE


def test_smollm2_template_ignores_tools_and_is_refused(smollm2, schemas):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2.folder)
    with pytest.raises(ChatTemplateError, match="ignores `tools`"):
        ChatToolFormat(tokenizer, schemas, parse_hermes)


def test_the_rollout_reads_native_calls_as_it_runs_them(tokenizer):
    from arpo.engines.hf import HFGenerator
    from arpo.models.tiny import build_tiny_llama
    from arpo.rollout import ArpoRollout, RolloutConfig

    config = RolloutConfig(tool_format="chat_template", tool_parser="hermes")
    with ToolBox([Calculator()]) as box:
        rollout = ArpoRollout(HFGenerator(build_tiny_llama(tokenizer), tokenizer), tokenizer, box, config)
        calls = rollout.read_calls(
            '<tool_call>{"name": "calc", "arguments": {"expression": "6*7"}}</tool_call>'
            '<tool_call>{"name": "search", "arguments": {"query": "x"}}</tool_call>'
            '<tool_call>{"name": "calc", "arguments": {"x": 1}}</tool_call>'
            "<tool_call>{calc}</tool_call>"
        )
    assert [(c.tag, c.text, c.error) for c in calls[:1]] == [("calc", "6*7", None)]
    assert calls[1].error == "Unknown tool 'search'; the tools are: calc."
    assert calls[2].error.startswith("Bad arguments: calc: no argument ['x']; the arguments: expression")
    assert calls[3].error.startswith("Malformed tool call: the tool call is not JSON")
    with pytest.raises(ValueError, match="unknown tool parser 'mistral'"):
        RolloutConfig(tool_format="chat_template", tool_parser="mistral")
