"""``http`` search backend: a configurable web-search API with an on-disk cache.

Request: ``GET endpoint?<query_field>=<query>&<params>`` or, with ``method="POST"``, a JSON body
``{<query_field>: query, **params}``. The API key is read from the environment variable named
by ``api_key_env`` (never from the config) and sent as the ``api_key_header`` header with
``api_key_prefix`` (default ``Authorization: Bearer <key>``), or as the request field
``api_key_param`` when that is set.

Response: JSON; ``results_field`` (a dotted path, e.g. ``"web.results"``) must be a list of
objects whose ``title_field`` and ``snippet_field`` (dotted paths too) give each hit; the first
``top_k`` become ``Page i: title: snippet`` lines.

Reliability: 5xx, 429, connection failures and timeouts are retried up to ``retries`` times
with exponential backoff (``backoff_s``, doubled each time); other 4xx fail at once. Each attempt
is limited to ``request_timeout_s`` and everything together to ``total_timeout_s``: no attempt
or backoff starts after that deadline, an attempt's socket operations time out after the time
that was left when it started, and the body is read in chunks with the deadline checked between
them (a server trickling bytes can overrun by at most one socket timeout). Results that succeeded are cached in SQLite
(``cache_path``), keyed by endpoint and normalised query, so a repeated query sends no request;
failures are not cached.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from arpo.tools.base import ToolResult, ToolStatus
from arpo.tools.search.base import Passage, SearchBackend, default_cache_dir, format_passages, normalize_query

MAX_RESPONSE_BYTES = 10 * 2**20
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A failed attempt worth retrying; ``timed_out`` says whether it was a timeout."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class HTTPBackend(SearchBackend):
    """A web-search API; see the module docstring."""

    def __init__(
        self,
        endpoint: str,
        *,
        method: str = "GET",
        query_field: str = "q",
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        api_key_env: str | None = None,
        api_key_header: str = "Authorization",
        api_key_prefix: str = "Bearer ",
        api_key_param: str | None = None,
        results_field: str = "results",
        title_field: str = "title",
        snippet_field: str = "snippet",
        top_k: int = 5,
        snippet_chars: int = 500,
        cache_path: str | Path | None = None,
        request_timeout_s: float = 10.0,
        total_timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"http search: endpoint must be an http(s) URL, got {endpoint!r}")
        if method not in ("GET", "POST"):
            raise ValueError(f"http search: method must be 'GET' or 'POST', got {method!r}")
        if min(top_k, snippet_chars) < 1 or retries < 0 or backoff_s < 0:
            raise ValueError("http search: top_k and snippet_chars must be >= 1, retries and backoff_s >= 0")
        if not 0 < request_timeout_s <= total_timeout_s:
            raise ValueError(
                f"http search: need 0 < request_timeout_s <= total_timeout_s, got {request_timeout_s} and {total_timeout_s}"
            )
        self.endpoint, self.method, self.query_field = endpoint, method, query_field
        self.params, self.headers = dict(params or {}), dict(headers or {})
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(
                    f"http search: the environment variable {api_key_env} (api_key_env) is not set"
                )
            if api_key_param is not None:
                self.params[api_key_param] = key
            else:
                self.headers[api_key_header] = api_key_prefix + key
        self.results_field, self.title_field, self.snippet_field = results_field, title_field, snippet_field
        self.top_k, self.snippet_chars = top_k, snippet_chars
        self.request_timeout_s, self.total_timeout_s = request_timeout_s, total_timeout_s
        self.retries, self.backoff_s = retries, backoff_s
        self.source = f"the web ({urllib.parse.urlsplit(endpoint).netloc})"
        self.cache_path = (
            Path(cache_path) if cache_path is not None else default_cache_dir("http") / "search.sqlite"
        )
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.cache_path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (endpoint TEXT, query TEXT, result TEXT, created REAL, "
            "PRIMARY KEY (endpoint, query))"
        )
        self._db.commit()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def search(self, query: str) -> ToolResult:
        key = normalize_query(query)
        with self._lock:
            row = self._db.execute(
                "SELECT result FROM results WHERE endpoint = ? AND query = ?", (self.endpoint, key)
            ).fetchone()
            self._counts["cache_hits" if row else "cache_misses"] += 1
        if row:
            return ToolResult(row[0])
        result = self._fetch(query)
        if result.ok:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                    (self.endpoint, key, result.text, time.time()),
                )
                self._db.commit()
        else:
            self._count("failures")
        return result

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _fetch(self, query: str) -> ToolResult:
        deadline = time.monotonic() + self.total_timeout_s
        failure = _Retryable("no attempt was made", timed_out=True)
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(max(0.0, min(self.backoff_s * 2 ** (attempt - 1), deadline - time.monotonic())))
            if deadline - time.monotonic() <= 0:
                break
            try:
                return self._attempt(query, deadline)
            except _Retryable as exc:
                failure = exc
        if failure.timed_out:
            return ToolResult(f"search API timed out (limit {self.total_timeout_s:g} s)", ToolStatus.TIMEOUT)
        return ToolResult(f"search API failed after {self.retries + 1} attempts: {failure}", ToolStatus.ERROR)

    def _attempt(self, query: str, deadline: float) -> ToolResult:
        """One request; returns the result, or raises _Retryable. Non-retryable failures are results."""
        fields = {self.query_field: query, **self.params}
        headers = {"Accept": "application/json", **self.headers}
        if self.method == "GET":
            request = urllib.request.Request(
                f"{self.endpoint}?{urllib.parse.urlencode(fields)}", headers=headers
            )
        else:
            headers["Content-Type"] = "application/json"
            request = urllib.request.Request(
                self.endpoint, json.dumps(fields).encode(), headers, method="POST"
            )
        self._count("requests")
        try:
            timeout = min(self.request_timeout_s, deadline - time.monotonic())
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = _read_until(response, deadline)
        except urllib.error.HTTPError as exc:
            if exc.code in RETRYABLE_STATUS:
                raise _Retryable(f"HTTP {exc.code}", timed_out=False) from None
            return ToolResult(
                f"search API rejected the request: HTTP {exc.code} {exc.reason}", ToolStatus.ERROR
            )
        except TimeoutError:
            raise _Retryable("timed out", timed_out=True) from None
        except urllib.error.URLError as exc:
            timed_out = isinstance(exc.reason, TimeoutError)
            raise _Retryable(f"unreachable ({exc.reason})", timed_out=timed_out) from None
        except (ConnectionError, OSError) as exc:
            raise _Retryable(f"connection failed ({exc})", timed_out=False) from None
        return self._parse(body)

    def _parse(self, body: bytes) -> ToolResult:
        try:
            payload = json.loads(body)
            results = _dig(payload, self.results_field)
        except (ValueError, KeyError) as exc:
            return ToolResult(f"search API returned an unexpected response: {exc}", ToolStatus.ERROR)
        if not isinstance(results, list):
            return ToolResult(f"search API field {self.results_field!r} is not a list", ToolStatus.ERROR)
        passages = []
        for item in results[: self.top_k]:
            try:
                title, snippet = _dig(item, self.title_field, ""), _dig(item, self.snippet_field, "")
            except KeyError as exc:
                return ToolResult(f"search API returned an unexpected response: {exc}", ToolStatus.ERROR)
            passages.append(Passage(str(title), str(snippet)))
        return ToolResult(format_passages(passages, self.snippet_chars))

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1


_MISSING = object()


def _dig(value: Any, dotted: str, default: Any = _MISSING) -> Any:
    """``value["a"]["b"]`` for ``"a.b"``; a missing key returns ``default`` or raises KeyError naming the path."""
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif default is not _MISSING:
            return default
        else:
            raise KeyError(f"no field {dotted!r}")
    return value


def _read_until(response: Any, deadline: float) -> bytes:
    body = bytearray()
    while chunk := response.read(65536):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise _Retryable(f"response larger than {MAX_RESPONSE_BYTES} bytes", timed_out=False)
        if time.monotonic() > deadline:
            raise _Retryable("timed out while reading the response", timed_out=True)
    return bytes(body)
