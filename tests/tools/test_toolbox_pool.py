"""ToolBox: per-call timeouts in a bounded pool, error capture, truncation budgets, metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.calculator import Calculator
from arpo.tools.toolbox import TRUNCATION_MARKER, ToolBox


class SleepTool(Tool):
    tag = "sleep"
    description = "sleep: waits the given seconds"

    def run(self, call: str) -> ToolResult:
        time.sleep(float(call))
        return ToolResult(f"slept {call}")


class BlockTool(Tool):
    """Blocks until released, so a test controls exactly when it returns."""

    tag = "block"
    description = "block: waits until released"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def run(self, call: str) -> ToolResult:
        self.release.wait(60)
        return ToolResult("released")


class FailTool(Tool):
    tag = "fail"
    description = "fail: always raises"

    def run(self, call: str) -> ToolResult:
        raise RuntimeError(f"broken on {call}")


class EchoTool(Tool):
    tag = "echo"
    description = "echo: returns its input"

    def run(self, call: str) -> ToolResult:
        return ToolResult(call)

    def metrics(self) -> dict[str, int]:
        return {"echoes": 7}


@pytest.fixture
def block() -> Iterator[BlockTool]:
    tool = BlockTool()
    yield tool
    tool.release.set()


def test_queued_calls_get_their_whole_timeout_from_when_they_start() -> None:
    # One worker, four 0.4 s calls, 1 s timeout: measured from the batch start, the last calls
    # would have less than 0.4 s left; measured per call, all of them finish.
    with ToolBox([SleepTool()], max_workers=1, timeout_s=1.0) as box:
        results = box.run_many([("sleep", "0.4")] * 4)
    assert [r.status for r in results] == [ToolStatus.OK] * 4


def test_an_overrunning_call_times_out_and_frees_its_slot(block: BlockTool) -> None:
    with ToolBox([block, EchoTool()], max_workers=1, timeout_s=0.3) as box:
        results = box.run_many([("block", ""), ("echo", "after")])
        assert results[0].status is ToolStatus.TIMEOUT
        assert results[0].text == "Tool <block> timed out after 0.3 s."
        assert results[1].text == "after" and results[1].ok
        assert box.metrics()["abandoned"] == 1


def test_exceptions_and_unknown_tags_become_error_results() -> None:
    with ToolBox([FailTool(), EchoTool()]) as box:
        failed, unknown, echoed = box.run_many([("fail", "x"), ("nope", "y"), ("echo", "z")])
    assert (failed.status, failed.text) == (ToolStatus.ERROR, "Tool <fail> failed: RuntimeError: broken on x")
    assert unknown.status is ToolStatus.ERROR
    assert unknown.text == "error: there is no tool <nope>; available: fail, echo"
    assert echoed.text == "z"


def test_results_keep_call_order_and_carry_latency() -> None:
    with ToolBox([SleepTool(), Calculator()], max_workers=4) as box:
        results = box.run_many([("sleep", "0.2"), ("calc", "2+3"), ("sleep", "0"), ("calc", "7*6")])
    assert [r.text for r in results] == ["slept 0.2", "5", "slept 0", "42"]
    assert results[0].latency_s >= 0.2


def test_character_budget_cuts_with_a_visible_marker() -> None:
    with ToolBox([EchoTool()], max_result_chars=50) as box:
        short, long = box.run_many([("echo", "fits"), ("echo", "x" * 200)])
    assert (short.text, short.truncated) == ("fits", False)
    assert long.truncated and len(long.text) == 50
    assert long.text == "x" * (50 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER
    assert box.metrics()["echo/truncated"] == 1


def test_token_budget_with_a_counting_function() -> None:
    words = " ".join(f"w{i}" for i in range(100))
    with ToolBox(
        [EchoTool()], max_result_chars=10_000, max_result_tokens=20, count_tokens=lambda s: len(s.split())
    ) as box:
        result = box.run("echo", words)
    assert result.truncated and result.text.endswith(TRUNCATION_MARKER)
    assert len(result.text.split()) <= 20
    assert result.text.startswith("w0 w1 w2")


class CharTokenizer:
    """Stands in for a Hugging Face tokenizer: one token per character, plus BOS unless told not to."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [ord(c) for c in text]


def test_token_budget_with_a_tokenizer_counts_without_special_tokens() -> None:
    with ToolBox([EchoTool()], max_result_tokens=30, count_tokens=CharTokenizer()) as box:
        exact, cut = box.run_many([("echo", "y" * 30), ("echo", "y" * 31)])
    assert (exact.text, exact.truncated) == ("y" * 30, False)
    assert cut.truncated and len(cut.text) == 30


def test_describe_lists_every_tool_description() -> None:
    with ToolBox([EchoTool(), Calculator()]) as box:
        assert box.describe() == f"{EchoTool.description}\n{Calculator.description}"
        assert box.tags == ["echo", "calc"]
        assert box.get("calc").tag == "calc"
        with pytest.raises(KeyError, match="no tool with tag <x>"):
            box.get("x")


def test_metrics_count_calls_by_status_and_include_tool_metrics() -> None:
    with ToolBox([EchoTool(), FailTool()]) as box:
        box.run_many([("echo", "a"), ("echo", "b"), ("fail", "c")])
        metrics = box.metrics()
    assert metrics["echo/calls"] == 2 and metrics["echo/ok"] == 2
    assert metrics["fail/error"] == 1
    assert metrics["echo/echoes"] == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_workers": 0}, "max_workers must be >= 1"),
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"max_result_chars": 5}, "max_result_chars must be >"),
        ({"max_result_tokens": 10}, "needs count_tokens"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ToolBox([EchoTool()], **kwargs)


def test_duplicate_tags_are_rejected() -> None:
    with pytest.raises(ValueError, match="two tools use the tag <echo>"):
        ToolBox([EchoTool(), EchoTool()])
