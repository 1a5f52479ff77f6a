"""The toolworld tokenizer: exact round trips of prompts, demonstrations and tool results; single
tokens for tags, digits and role markers; names tokenised the same everywhere."""

from __future__ import annotations

import re
import statistics

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from arpo.tasks.prompts import render_prompt
from arpo.tasks.toolworld import ToolworldPaths, demo_example, load_demos, load_toolworld_tasks, read_config
from arpo.tasks.toolworld.tokenizer import EOS, PAD, ROLE_MARKERS, protocol_tags


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_vocabulary_and_single_tokens(
    toolworld: ToolworldPaths, toolworld_tokenizer: PreTrainedTokenizerFast
) -> None:
    tokenizer = toolworld_tokenizer
    assert len(tokenizer) == read_config(toolworld.root).vocab_size == 1024
    for token in [*protocol_tags(), *ROLE_MARKERS, EOS, PAD, *"0123456789"]:
        assert len(encode(tokenizer, token)) == 1, token
    assert tokenizer.eos_token == EOS and tokenizer.pad_token == PAD
    digit_tokens = [t for t in tokenizer.get_vocab() if re.search(r"\d", t)]
    assert sorted(digit_tokens) == list("0123456789")  # no token merges a digit with anything


def test_skipping_special_tokens_drops_role_markers_and_keeps_protocol_tags(
    toolworld_tokenizer: PreTrainedTokenizerFast,
) -> None:
    text = "<|user|>Hi<|assistant|><think>Plan: search.</think><search>mayor of Vemo</search><result>x</result><python>1+2</python><answer>3</answer><|eos|>"
    ids = encode(toolworld_tokenizer, text)
    assert toolworld_tokenizer.decode(ids) == text
    assert toolworld_tokenizer.decode(ids, skip_special_tokens=True) == re.sub(r"<\|\w+\|>", "", text)


def test_every_demonstration_round_trips_exactly(
    toolworld: ToolworldPaths, toolworld_tokenizer: PreTrainedTokenizerFast
) -> None:
    tokenizer = toolworld_tokenizer
    lengths = []
    for demo in load_demos(toolworld.demos):
        ids, mask = demo_example(demo, tokenizer)
        prompt = render_prompt(tokenizer, demo.task.chat())
        prompt_text = tokenizer.apply_chat_template(
            demo.task.chat(), tokenize=False, add_generation_prompt=True
        )
        assert ids[: len(prompt)] == prompt and not any(mask[: len(prompt)])
        assert tokenizer.decode(ids) == prompt_text + demo.response()
        assert encode(tokenizer, prompt_text) == prompt
        assert encode(tokenizer, demo.response()) == ids[len(prompt) :]  # segment boundaries change nothing
        for segment in demo.segments:
            text = segment.text if segment.role == "model" else f"<result>{segment.text}</result>"
            assert tokenizer.decode(encode(tokenizer, text)) == text
        lengths.append(len(ids))
    assert max(lengths) <= 200, max(lengths)


@pytest.mark.parametrize(
    "text",
    [
        'Traceback (most recent call last):\n  File "<string>", line 1\nZeroDivisionError: division by zero',
        "tabs\tand  double  spaces\n\n, unicode: café 東京 — ✓ and \x00 bytes",
        "No search results found.",
        "  leading and trailing  ",
    ],
)
def test_any_text_round_trips(toolworld_tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    assert toolworld_tokenizer.decode(encode(toolworld_tokenizer, text)) == text


def test_names_are_the_same_tokens_in_question_query_result_and_answer(
    toolworld_tokenizer: PreTrainedTokenizerFast,
) -> None:
    tokenizer = toolworld_tokenizer
    for name in ("Vemo", "Tarak", "Kozubi"):
        name_ids = encode(tokenizer, name)
        for context in (
            f"What is the mayor of {name}?",
            f"<search>mayor of {name}</search>",
            f"Page 1: Koto: town, population 10204, mayor {name}",
            f"<answer>{name}</answer>",
        ):
            ids = encode(tokenizer, context)
            assert any(ids[i : i + len(name_ids)] == name_ids for i in range(len(ids))), (name, context)


def test_test_names_are_cut_like_train_names(
    toolworld: ToolworldPaths, toolworld_tokenizer: PreTrainedTokenizerFast
) -> None:
    def mean_name_length(split: str) -> float:
        questions = " ".join(t.question for t in load_toolworld_tasks(getattr(toolworld, split)))
        names = set(re.findall(r"\b[A-Z][a-z]+\b", questions)) - {"What"}
        return statistics.mean(len(encode(toolworld_tokenizer, name)) for name in names)

    assert abs(mean_name_length("train") - mean_name_length("test")) < 0.4


def test_saved_tokenizer_loads_with_auto_tokenizer(
    toolworld: ToolworldPaths, toolworld_tokenizer: PreTrainedTokenizerFast
) -> None:
    again = AutoTokenizer.from_pretrained(str(toolworld.tokenizer))
    chat = load_toolworld_tasks(toolworld.test)[0].chat()
    assert render_prompt(again, chat) == render_prompt(toolworld_tokenizer, chat)
    rendered = again.apply_chat_template(
        [*chat, {"role": "assistant", "content": "<answer>1</answer>"}], tokenize=False
    )
    assert rendered.endswith("<|assistant|><answer>1</answer><|eos|>")
