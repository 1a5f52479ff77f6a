"""The LLM judge against a local OpenAI-compatible server (127.0.0.1 only): correct, incorrect,
garbage, timeouts, HTTP errors, the API key, and the strict verdict parser."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arpo.eval.judge import Judge, JudgeConfig, parse_verdict


class FakeJudgeServer(ThreadingHTTPServer):
    """Answers every chat completion with ``reply`` (after ``delay_s``), or with ``status``/``body``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.reply = "CORRECT"
        self.delay_s = 0.0
        self.status = 200
        self.body: bytes | None = None
        self.requests: list[tuple[dict[str, str], dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeJudgeServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((dict(self.headers), request))
        time.sleep(self.server.delay_s)
        body = (
            self.server.body
            or json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": self.server.reply}}]}
            ).encode()
        )
        try:
            self.send_response(self.server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    server = FakeJudgeServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def judge_for(server: FakeJudgeServer, **options) -> Judge:
    return Judge(JudgeConfig(base_url=server.url, model="grader", api_key_env=None, **options))


def test_correct_verdict_and_the_request_sent(server, monkeypatch):
    monkeypatch.setenv("ARPO_TEST_JUDGE_KEY", "sk-test")
    judge = Judge(JudgeConfig(base_url=server.url + "/", model="grader", api_key_env="ARPO_TEST_JUDGE_KEY"))
    verdict = judge.judge("Who wrote Hamlet?", ["Shakespeare", "William Shakespeare"], "W. Shakespeare")
    assert verdict.correct is True and verdict.error is None and verdict.reply == "CORRECT"
    ((headers, body),) = server.requests
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "grader" and body["temperature"] == 0
    user = body["messages"][-1]["content"]
    assert (
        "Who wrote Hamlet?" in user
        and "Shakespeare | William Shakespeare" in user
        and "W. Shakespeare" in user
    )


def test_incorrect_verdict(server):
    server.reply = " incorrect.\n"
    assert judge_for(server).judge("q", ["a"], "b").correct is False


@pytest.mark.parametrize("reply", ["Maybe", "CORRECT!", "The answer is CORRECT", "", "CORRECT INCORRECT"])
def test_garbage_is_no_verdict(server, reply):
    server.reply = reply
    verdict = judge_for(server).judge("q", ["a"], "b")
    assert verdict.correct is None and "not a verdict" in (verdict.error or "")
    assert verdict.reply == reply


def test_timeout_is_no_verdict(server):
    server.delay_s = 1.0
    started = time.perf_counter()
    verdict = judge_for(server, timeout_s=0.2).judge("q", ["a"], "b")
    assert verdict.correct is None and "timed out" in (verdict.error or "")
    assert time.perf_counter() - started < 0.9


def test_http_error_and_malformed_body_are_no_verdict(server):
    server.status = 500
    assert judge_for(server).judge("q", ["a"], "b").error == "judge request failed: HTTP 500"
    server.status, server.body = 200, b"not json"
    assert "not a chat completion" in (judge_for(server).judge("q", ["a"], "b").error or "")
    server.body = json.dumps({"choices": []}).encode()
    assert judge_for(server).judge("q", ["a"], "b").correct is None


def test_unreachable_endpoint_is_no_verdict():
    verdict = Judge(JudgeConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None)).judge(
        "q", ["a"], "b"
    )
    assert verdict.correct is None and verdict.error


def test_missing_answer_is_incorrect_without_a_request(server):
    assert judge_for(server).judge("q", ["a"], None).correct is False
    assert not server.requests


def test_judge_many_keeps_the_order(server):
    server.reply = "CORRECT"
    verdicts = judge_for(server, max_workers=4).judge_many(
        [("q", ["a"], "a"), ("q", ["a"], None), ("q", ["a"], "x")]
    )
    assert [v.correct for v in verdicts] == [True, False, True]


def test_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ARPO_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="ARPO_TEST_NO_SUCH_KEY"):
        Judge(JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key_env="ARPO_TEST_NO_SUCH_KEY"))


@pytest.mark.parametrize(
    ("reply", "expected"), [("CORRECT", True), ("correct", True), (" Incorrect. ", False)]
)
def test_parse_verdict_accepts_only_the_two_words(reply, expected):
    assert parse_verdict(reply) is expected


@pytest.mark.parametrize("reply", ["yes", "CORRECT..", "CORRECT\nbecause", "INCORRECT!", "correct answer"])
def test_parse_verdict_rejects_everything_else(reply):
    with pytest.raises(ValueError, match="not a verdict"):
        parse_verdict(reply)
