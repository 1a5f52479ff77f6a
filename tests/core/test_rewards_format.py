"""The format gate and answer extraction, one hand-written response per rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from arpo.core.answer_format import FormatSpec, check_format, last_boxed

SPEC = FormatSpec()
GOOD = (
    "<think>Need the year.</think><search>founding year</search><result>1812</result>"
    "<think>Compute.</think><python>print(1812 + 1)</python><result>1813</result>"
    "<answer>It is \\boxed{1813}</answer>"
)


def test_protocol_response_passes_and_yields_last_boxed() -> None:
    check = check_format(GOOD, SPEC)
    assert check.ok and check.error is None
    assert check.answer == "1813"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        ("<answer>1</answer>", "no <think> block"),
        ("<think>a<answer>1</answer>", "<think> not closed"),
        ("<think><think>a</think></think><answer>1</answer>", "unbalanced <think>: <think> nested"),
        ("</think><answer>1</answer>", "unbalanced <think>: </think> without opening"),
        ("<think>a</think>", "no <answer>"),
        ("<think>a</think><answer>1</answer><answer>2</answer>", "more than one <answer>"),
        ("<think>a</think><answer>1", "<answer> not closed"),
        ("<think>a</think>1</answer>", "</answer> without <answer>"),
        ("<think>a</think><answer>  </answer>", "empty <answer>"),
        (
            "<think>a</think><search>q</search><answer>1</answer>",
            "<search> call not followed by <result> (got <answer>)",
        ),
        ("<think>a</think><search>q</search>", "<search> call not followed by <result>"),
        ("<think>a</think><python>x<answer>1</answer>", "<python> not closed before <answer>"),
        ("<think>a</think><python>x", "<python> not closed"),
        ("<think>a</think>q</search><result>r</result><answer>1</answer>", "</search> without <search>"),
        (
            "<think>a</think><result>made up</result><answer>1</answer>",
            "<result> without a preceding tool call",
        ),
        ("<think>a</think><search>q</search><result>r <answer>1</answer>", "<result> not closed"),
        ("<think>a</think><answer>x <search>q</search></answer>", "tool call <search> inside <answer>"),
    ],
)
def test_each_violation_is_named(response: str, error: str) -> None:
    check = check_format(response, SPEC)
    assert not check.ok
    assert check.answer is None
    assert check.error == error


def test_truncated_finish_reason_fails_even_with_a_good_response() -> None:
    assert (
        check_format(GOOD, SPEC, finish_reason="length").error
        == "finish reason 'length' (truncated response)"
    )
    assert check_format(GOOD, SPEC, finish_reason="eos").ok
    lenient = FormatSpec(violation_finish_reasons=())
    assert check_format(GOOD, lenient, finish_reason="length").ok


def test_tags_inside_a_result_body_are_environment_text() -> None:
    response = (
        "<think>a</think><search>q</search><result>snippet: <answer>wrong</answer> <think></result>"
        "<answer>right</answer>"
    )
    check = check_format(response, SPEC)
    assert check.ok and check.answer == "right"


def test_tool_calls_inside_think_are_allowed() -> None:
    response = "<think>let me look <search>q</search><result>r</result> ok</think><answer>r</answer>"
    assert check_format(response, SPEC).answer == "r"


def test_think_requirement_and_boxed_requirement_are_configurable() -> None:
    bare = "<answer>42</answer>"
    assert check_format(bare, FormatSpec(require_think=False)).answer == "42"
    boxed_required = FormatSpec(require_boxed=True)
    assert (
        check_format("<think>a</think><answer>42</answer>", boxed_required).error
        == "no \\boxed{…} in <answer>"
    )
    assert check_format("<think>a</think><answer>\\boxed{42}</answer>", boxed_required).answer == "42"


def test_unboxed_answer_is_the_whole_stripped_block() -> None:
    assert check_format("<think>a</think><answer>\n Paris \n</answer>", SPEC).answer == "Paris"


def test_custom_tags() -> None:
    spec = FormatSpec(think_tag="reason", answer_tag="final", result_tag="output", tool_tags=("calc",))
    response = "<reason>r</reason><calc>1+2</calc><output>3</output><final>3</final>"
    assert check_format(response, spec).answer == "3"
    # <search> is not a tool of this spec: it is plain text, so the response still passes
    assert check_format("<reason>r</reason><search>q</search><final>3</final>", spec).ok
    assert check_format("<reason>r</reason><calc>1</calc><final>3</final>", spec).error == (
        "<calc> call not followed by <output> (got <final>)"
    )


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed {x^{2}} and \\boxed{y", "x^{2}"),
        ("no box", None),
        ("\\boxed{unbalanced", None),
        ("\\boxed{}", ""),
    ],
)
def test_last_boxed(text: str, boxed: str | None) -> None:
    assert last_boxed(text) == boxed


def test_spec_rejects_colliding_tags_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="distinct"):
        FormatSpec(tool_tags=("search", "result"))
    with pytest.raises(ValidationError, match="extra"):
        FormatSpec.model_validate({"answer_tags": "x"})
