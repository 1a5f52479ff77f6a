"""Tool faults during training: a tool that hangs forever, the HTTP search API going down mid-run,
injected crashes, hangs and garbage output. Every call still returns a result, the step goes on,
and the faults are counted in the metrics."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from arpo.tools import Calculator, ToolBox
from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.faults import FaultyTool
from arpo.tools.registry import build_tool
from arpo.tools.search import SearchTool
from arpo.tools.search.http import HTTPBackend
from arpo.train.rl import RLConfig, RLTrainer
from tests.train.helpers import arithmetic_tasks, count_ones, rl_config

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class HangTool(Tool):
    """A tool whose calls never return (until the test ends and releases them)."""

    description = "hangs"

    def __init__(self, tag: str = "hang") -> None:
        self.tag = tag
        super().__init__()
        self.release = threading.Event()

    def run(self, call: str) -> ToolResult:
        self.release.wait()
        return ToolResult("released")


@pytest.fixture
def hang() -> Iterator[HangTool]:
    tool = HangTool()
    yield tool
    tool.release.set()


def test_hung_calls_time_out_without_stalling_the_others(hang):
    with ToolBox([hang, Calculator()], max_workers=4, timeout_s=2.0) as box:
        results = box.run_many([("hang", ""), ("calc", "2+3"), ("hang", ""), ("calc", "7*6")])
        assert [r.status for r in results] == [
            ToolStatus.TIMEOUT,
            ToolStatus.OK,
            ToolStatus.TIMEOUT,
            ToolStatus.OK,
        ]
        assert [results[1].text, results[3].text] == ["5", "42"], "results keep the call order"
        assert results[0].text == "Tool <hang> timed out after 2 s."
        assert all(r.latency_s < box.timeout_s for r in results[1::2]), "the quick calls did not wait"
        again = box.run_many([("calc", "1+1")] * 4)  # the hung threads still block; their slots are free
        assert [r.text for r in again] == ["2"] * 4
        assert box.metrics()["abandoned"] == 2


def test_more_hung_calls_than_workers_cannot_starve_the_pool(hang):
    with ToolBox([hang, Calculator()], max_workers=2, timeout_s=0.5) as box:
        results = box.run_many([("hang", ""), ("hang", ""), ("calc", "2+3")])
    assert [r.status for r in results] == [ToolStatus.TIMEOUT, ToolStatus.TIMEOUT, ToolStatus.OK]


def fault_config(steps: int) -> RLConfig:
    """Small RL steps for the tool-calling model; a tiny learning rate so it keeps calling."""
    return rl_config(
        steps=steps,
        save_every=100,
        optim={"lr": 1e-6},
        rollout={
            "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4},
            "max_response_tokens": 32,
            "max_tool_calls": 2,
        },
    )


def tool_caller_trainer(steps: int, tool_caller, tokenizer, tools: ToolBox, run_dir: Path) -> RLTrainer:
    """An RL trainer of a copy of the tool-calling model on the arithmetic tasks, with ``tools``."""
    return RLTrainer(
        fault_config(steps),
        copy.deepcopy(tool_caller),
        tokenizer,
        arithmetic_tasks(),
        tools,
        count_ones,
        run_dir,
    )


def test_a_hung_tool_in_training_times_out_and_is_counted(tool_caller, tokenizer, tmp_path):
    hung = HangTool("calc")
    try:
        with ToolBox([hung], timeout_s=0.3) as tools:
            (metrics,) = tool_caller_trainer(1, tool_caller, tokenizer, tools, tmp_path).train()
            abandoned = tools.metrics()["abandoned"]
    finally:
        hung.release.set()
    assert metrics["rollout/tool_timeout"] > 0 and metrics["rollout/tool_ok"] == 0
    assert abandoned == metrics["rollout/tool_timeout"], "each timed-out call was run once"


class SearchServer:
    """A search API on 127.0.0.1 that answers every query with one hit, until :meth:`stop`."""

    def __init__(self) -> None:
        body = json.dumps({"results": [{"title": "Three", "snippet": "1+2 is 3."}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/search"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_the_search_api_going_down_mid_run_gives_errors_after_bounded_retries(
    tool_caller, tokenizer, tmp_path: Path, monkeypatch
):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    server = SearchServer()
    cache = tmp_path / "search.sqlite"
    backend = HTTPBackend(
        server.url, cache_path=cache, retries=2, backoff_s=0.01, request_timeout_s=2, total_timeout_s=5
    )

    def take_the_api_down(step: int, metrics: dict) -> None:
        if step == 1:
            server.stop()
            with sqlite3.connect(cache) as db:  # a cold cache: every later call goes to the network
                db.execute("DELETE FROM results")

    with ToolBox([SearchTool(backend, tag="calc")]) as tools:  # the model calls <calc>: search answers
        history = tool_caller_trainer(3, tool_caller, tokenizer, tools, tmp_path).train(take_the_api_down)
        counters = tools.metrics()
        late = tools.run("calc", "another query")
    up, *down = history
    assert [m["step"] for m in history] == [1, 2, 3], "the run goes on"
    assert up["rollout/tool_ok"] > 0 and up["rollout/tool_error"] == 0
    assert all(m["rollout/tool_error"] > 0 and m["rollout/tool_ok"] == 0 for m in down)
    assert counters["calc/ok"] == up["rollout/tool_ok"], "every call after the outage failed"
    failed = counters["calc/failures"]
    assert 0 < failed == counters["calc/error"] <= sum(m["rollout/tool_error"] for m in down)
    assert counters["calc/retries"] == 2 * failed, "each failed call was retried exactly `retries` times"
    assert late.status is ToolStatus.ERROR
    assert late.text.startswith("search API failed after 3 attempts: unreachable")


def test_injected_faults_become_results_at_the_seeded_rate():
    spec = {
        "import": "arpo.tools.faults:FaultyTool",
        "tool": {"name": "calc"},
        "rate": 0.3,
        "seed": 1,
        "kinds": ["crash", "garbage"],
    }
    with ToolBox([build_tool(spec)]) as box:
        results = [box.run("calc", "2+3") for _ in range(200)]
        counters = box.metrics()
    crashes, garbage = counters["calc/injected_crash"], counters["calc/injected_garbage"]
    assert 0.2 * 200 < crashes + garbage < 0.4 * 200 and crashes and garbage
    assert Counter(r.status for r in results) == {ToolStatus.ERROR: crashes, ToolStatus.OK: 200 - crashes}
    assert sum(r.text == "5" for r in results) == 200 - crashes - garbage
    assert "Tool <calc> failed: InjectedFault: injected crash of <calc>" in {r.text for r in results}


def test_an_injected_hang_is_timed_out_and_released_on_close():
    calls = []

    class CountingCalculator(Calculator):
        def run(self, call: str) -> ToolResult:
            calls.append(call)
            return super().run(call)

    faulty = FaultyTool(CountingCalculator(), rate=1.0, kinds=("hang",))
    before = set(threading.enumerate())
    with ToolBox([faulty], timeout_s=0.3) as box:
        assert box.run("calc", "2+3").status is ToolStatus.TIMEOUT
        (hung,) = [t for t in set(threading.enumerate()) - before if t.name == "arpo-tool-calc"]
    hung.join(timeout=30)  # closing the tool box ends the hang
    assert not hung.is_alive()
    assert calls == [], "a closed tool is not called (a python tool would start a new sandbox)"


def test_the_same_seed_injects_the_same_faults():
    def texts(seed: int) -> list[str]:
        with ToolBox([FaultyTool(Calculator(), rate=0.5, seed=seed, kinds=("crash", "garbage"))]) as box:
            return [box.run("calc", "2+3").text for _ in range(30)]

    assert texts(7) == texts(7) != texts(8)


def test_garbage_tool_output_is_plain_text_to_the_rollout(tool_caller, tokenizer, tmp_path):
    garbage = FaultyTool(Calculator(), rate=1.0, kinds=("garbage",))
    with ToolBox([garbage]) as tools:
        (metrics,) = tool_caller_trainer(1, tool_caller, tokenizer, tools, tmp_path).train()
        injected = tools.metrics()["calc/injected_garbage"]
    assert injected > 0 and metrics["rollout/tool_ok"] == injected
    assert metrics["train/skipped_updates"] == 0 and metrics["grad_norm"] > 0
