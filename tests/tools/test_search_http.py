"""HTTP search against a real server on 127.0.0.1: success, retry after 5xx, timeout, cache hits."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from arpo.tools.base import ToolStatus
from arpo.tools.search import SearchTool
from arpo.tools.search.http import HTTPBackend

HITS = {
    "data": {"items": [{"name": "Paris", "desc": "Capital of France."}, {"name": "Lyon", "desc": "A city."}]}
}


@dataclass
class Script:
    """What the server answers, one entry per request (the last one repeats), and what it saw."""

    responses: list[tuple[int, Any, float]] = field(default_factory=lambda: [(200, HITS, 0.0)])
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Script]]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes | None) -> None:
            url = urllib.parse.urlsplit(self.path)
            script.requests.append(
                {
                    "method": self.command,
                    "query": dict(urllib.parse.parse_qsl(url.query)),
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            status, payload, delay = script.responses[min(len(script.requests), len(script.responses)) - 1]
            time.sleep(delay)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def do_GET(self) -> None:
            self._answer(None)

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers["Content-Length"])))

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/search", script
    httpd.shutdown()
    httpd.server_close()


def make_tool(endpoint: str, tmp_path: Path, **options: Any) -> SearchTool:
    settings = {
        "results_field": "data.items",
        "title_field": "name",
        "snippet_field": "desc",
        "cache_path": tmp_path / "cache.sqlite",
        "backoff_s": 0.01,
        **options,
    }
    return SearchTool(HTTPBackend(endpoint, **settings))


def test_success_maps_the_response_fields(
    server: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, script = server
    monkeypatch.setenv("ARPO_TEST_SEARCH_KEY", "k-123")
    tool = make_tool(endpoint, tmp_path, api_key_env="ARPO_TEST_SEARCH_KEY", params={"count": 2})
    result = tool.run("capital of France")
    assert result.status is ToolStatus.OK
    assert result.text == "Page 1: Paris: Capital of France.\nPage 2: Lyon: A city."
    (request,) = script.requests
    assert request["query"] == {"q": "capital of France", "count": "2"}
    assert request["headers"]["Authorization"] == "Bearer k-123"


def test_post_with_the_key_as_a_field(
    server: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, script = server
    monkeypatch.setenv("ARPO_TEST_SEARCH_KEY", "k-456")
    tool = make_tool(
        endpoint,
        tmp_path,
        method="POST",
        query_field="query",
        api_key_env="ARPO_TEST_SEARCH_KEY",
        api_key_param="key",
    )
    assert tool.run("lyon").ok
    assert json.loads(script.requests[0]["body"]) == {"query": "lyon", "key": "k-456"}
    assert "Authorization" not in script.requests[0]["headers"]


def test_a_500_is_retried_and_then_succeeds(server: tuple[str, Script], tmp_path: Path) -> None:
    endpoint, script = server
    script.responses = [(500, {"error": "busy"}, 0.0), (200, HITS, 0.0)]
    tool = make_tool(endpoint, tmp_path, retries=2)
    result = tool.run("capital of France")
    assert result.status is ToolStatus.OK and result.text.startswith("Page 1: Paris")
    assert len(script.requests) == 2
    assert tool.metrics()["retries"] == 1


def test_persistent_5xx_fails_after_all_attempts_and_is_not_cached(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    endpoint, script = server
    script.responses = [(503, {}, 0.0)]
    tool = make_tool(endpoint, tmp_path, retries=2)
    result = tool.run("q")
    assert (result.status, result.text) == (ToolStatus.ERROR, "search API failed after 3 attempts: HTTP 503")
    tool.run("q")
    assert len(script.requests) == 6


def test_a_4xx_is_not_retried(server: tuple[str, Script], tmp_path: Path) -> None:
    endpoint, script = server
    script.responses = [(401, {"error": "bad key"}, 0.0)]
    result = make_tool(endpoint, tmp_path, retries=3).run("q")
    assert result.status is ToolStatus.ERROR and "HTTP 401" in result.text
    assert len(script.requests) == 1


def test_a_slow_server_times_out_within_the_attempts(server: tuple[str, Script], tmp_path: Path) -> None:
    endpoint, script = server
    script.responses = [(200, HITS, 2.0)]
    tool = make_tool(endpoint, tmp_path, request_timeout_s=0.2, total_timeout_s=0.5, retries=5)
    result = tool.run("capital of France")
    assert result.status is ToolStatus.TIMEOUT
    assert result.text == "search API timed out (limit 0.5 s)"
    assert 1 <= len(script.requests) <= 3  # the overall limit stops retrying long before 6 attempts


def test_a_repeated_query_is_answered_from_the_cache(server: tuple[str, Script], tmp_path: Path) -> None:
    endpoint, script = server
    tool = make_tool(endpoint, tmp_path)
    first = tool.run("Capital of France")
    second = tool.run("capital of  france?")
    assert second.text == first.text and second.ok
    assert len(script.requests) == 1
    tool.close()
    reopened = make_tool(endpoint, tmp_path)  # the cache is on disk
    assert reopened.run("CAPITAL OF FRANCE").text == first.text
    assert len(script.requests) == 1
    assert reopened.metrics() == {"cache_hits": 1}


def test_unexpected_response_shape_is_an_error(server: tuple[str, Script], tmp_path: Path) -> None:
    endpoint, script = server
    script.responses = [(200, {"other": []}, 0.0)]
    result = make_tool(endpoint, tmp_path).run("q")
    assert (result.status, result.text) == (
        ToolStatus.ERROR,
        "search API returned an unexpected response: \"no field 'data.items'\"",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": "ftp://x"}, "must be an http"),
        ({"method": "PUT"}, "method must be 'GET' or 'POST'"),
        ({"api_key_env": "ARPO_TEST_UNSET_KEY_VAR"}, "ARPO_TEST_UNSET_KEY_VAR .api_key_env. is not set"),
        ({"request_timeout_s": 5, "total_timeout_s": 1}, "request_timeout_s <= total_timeout_s"),
    ],
)
def test_bad_configuration(
    tmp_path: Path, kwargs: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARPO_TEST_UNSET_KEY_VAR", raising=False)
    options = {"endpoint": "http://127.0.0.1:9/search", "cache_path": tmp_path / "c.sqlite", **kwargs}
    with pytest.raises(ValueError, match=message):
        HTTPBackend(**options)
