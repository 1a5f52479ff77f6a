"""Tools served by an MCP server (Model Context Protocol), through the official ``mcp`` SDK.

A tool spec ``{"mcp": {...}, ...}`` connects to one server and turns each tool it lists into an
arpo :class:`~arpo.tools.base.Tool` (``pip install 'arpo[mcp]'``):

* ``mcp.command``: the server as a program speaking MCP over stdio, e.g.
  ``["python", "server.py"]`` (with ``mcp.env``, default the SDK's minimal environment —
  ``HOME``, ``PATH``, ...; the server sees no other variable of the trainer —, and ``mcp.cwd``);
* ``mcp.url``: a server reached over streamable HTTP, e.g. ``http://localhost:8000/mcp``;
* ``tools``: the names to use (default: every tool the server lists); ``call_timeout_s``: the
  MCP request's own time limit (the ToolBox's ``timeout_s`` applies as for every tool);
  ``connect_timeout_s``: for starting the server, the handshake and the tool list.

The tag of a tool is its MCP name (which must then be a word: letters, digits, ``_``, ``-``),
and its description the server's, followed by its arguments. The text between the tags is the
call's arguments, in the only form a tag protocol allows for JSON-schema tools:

* a tool with exactly one parameter takes the raw text as that parameter's value
  (``<shout>hello</shout>``), converted to an integer, number or boolean when the schema says so;
* any other tool takes a JSON object (``<add>{"a": 2, "b": 3}</add>``); other text returns an
  ``error`` result naming the expected arguments, which the model sees like any tool result.

The result is the call's text contents joined by newlines (an image or other binary content
appears as ``[image/png content]``; structured content as JSON when there is no text); a result
the server marks as an error has status ``error``. One connection serves all tools of a spec: a
background thread runs its event loop, and calls from the ToolBox's worker threads go through
it concurrently. Closing any of the tools (the ToolBox closes them all) ends the session and
stops a stdio server. The server's stderr goes to a temporary log file, whose end is quoted
when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from arpo.tools.base import TAG_PATTERN, Tool, ToolResult, ToolStatus


class McpError(RuntimeError):
    """The MCP server could not be started, reached or listed."""


class McpConnection:
    """One session with one MCP server, served by a background event loop (module docstring)."""

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout_s: float = 30.0,
    ) -> None:
        if (command is None) == (url is None):
            raise ValueError("an mcp tool spec needs exactly one of mcp.command (a program) and mcp.url")
        if command is not None and (isinstance(command, str) or not command):
            raise ValueError(
                f"mcp.command must be a non-empty list like ['python', 'server.py'], got {command!r}"
            )
        self.where = " ".join(command) if command is not None else str(url)
        self._log = tempfile.NamedTemporaryFile("w+", prefix="arpo-mcp-", suffix=".log", delete=False)  # noqa: SIM115
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready: Future[Any] = Future()
        self._ended = threading.Event()
        """Set when the session has ended and its transport (a stdio server) is closed."""
        self._closed = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"arpo-mcp {self.where}", daemon=True
        )
        self._thread.start()
        self._served = asyncio.run_coroutine_threadsafe(
            self._serve(command, url, env, cwd, headers), self._loop
        )
        try:
            self.tools: list[Any] = self._ready.result(timeout=connect_timeout_s)
        except FutureTimeout:
            message = f"MCP server {self.where}: no tool list within {connect_timeout_s} s{self._log_tail()}"
            self.close()
            raise McpError(message) from None
        except Exception as exc:
            message = f"MCP server {self.where}: {exc}{self._log_tail()}"
            self.close()
            raise McpError(message) from exc

    async def _serve(
        self,
        command: Sequence[str] | None,
        url: str | None,
        env: Mapping[str, str] | None,
        cwd: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        """Open the transport and the session, list the tools, then hold them until :meth:`close`."""
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        self._stop = asyncio.Event()
        try:
            async with AsyncExitStack() as stack:
                if command is not None:
                    params = StdioServerParameters(
                        command=command[0], args=list(command[1:]), env=dict(env) if env else None, cwd=cwd
                    )
                    read, write = await stack.enter_async_context(stdio_client(params, errlog=self._log))
                else:
                    import httpx2
                    from mcp.client.streamable_http import streamable_http_client

                    client = await stack.enter_async_context(
                        httpx2.AsyncClient(
                            headers=dict(headers or {}), timeout=httpx2.Timeout(30.0, read=300.0)
                        )
                    )
                    streams = await stack.enter_async_context(
                        streamable_http_client(str(url), http_client=client)
                    )
                    read, write = streams[0], streams[1]
                self.session = await stack.enter_async_context(ClientSession(read, write))
                await self.session.initialize()
                listed, cursor = [], None
                while True:
                    page = await self.session.list_tools(
                        params=None if cursor is None else _page_params(cursor)
                    )
                    listed += page.tools
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self._ready.set_result(listed)
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor, or ends the session
            if not self._ready.done():
                self._ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._ended.set()

    def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        """``tools/call`` on the server; the SDK's ``CallToolResult``."""
        if self._closed:
            raise McpError(f"MCP server {self.where}: the session is closed")
        future = asyncio.run_coroutine_threadsafe(
            self.session.call_tool(name, arguments, read_timeout_seconds=timeout_s), self._loop
        )
        try:
            return future.result(timeout=timeout_s + 5)
        except FutureTimeout:
            future.cancel()
            raise

    def close(self) -> None:
        """End the session (a stdio server is stopped) and the loop; later calls are no-ops."""
        if self._closed:
            return
        self._closed = True
        if self._ready.done() and self._ready.exception() is None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)  # a live session ends normally
        else:
            self._served.cancel()  # one still connecting (or hung) is cancelled: its transport closes
        self._ended.wait(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def _log_tail(self) -> str:
        self._log.flush()
        try:
            tail = Path(self._log.name).read_text(errors="replace")[-1500:].strip()
        except OSError:
            return ""
        return f"; the server's stderr ends with:\n{tail}" if tail else ""


def _page_params(cursor: str) -> Any:
    from mcp.types import PaginatedRequestParams

    return PaginatedRequestParams(cursor=cursor)


class McpTool(Tool):
    """One tool of an MCP server, called as ``<name>arguments</name>`` (module docstring)."""

    def __init__(self, connection: McpConnection, spec: Any, call_timeout_s: float) -> None:
        self.connection = connection
        self.name = spec.name
        self.tag = spec.name
        if not TAG_PATTERN.match(self.tag):
            raise ValueError(
                f"MCP tool {spec.name!r} of {connection.where} cannot be a tag (letters, digits, '_' or '-'): "
                "leave it out with the spec's `tools` list"
            )
        schema = getattr(spec, "input_schema", None) or getattr(spec, "inputSchema", None) or {}
        self.parameters = {"type": "object", "properties": {}, **schema}  # type: ignore[misc]
        self.call_timeout_s = call_timeout_s
        properties, required = self.parameters["properties"], self.parameters.get("required", [])
        arguments = ", ".join(
            f"{name}: {prop.get('type', 'any')}{'' if name in required else ' (optional)'}"
            for name, prop in properties.items()
        )
        form = (
            f"the value of {next(iter(properties))}"
            if len(properties) == 1
            else "a JSON object of the arguments"
        )
        self.function_description = (spec.description or "").strip() or self.tag
        self.description = (
            f"<{self.tag}>…</{self.tag}>: {self.function_description}"
            f" Arguments: {arguments or 'none'}; between the tags, {form}."
        )
        super().__init__()

    def run(self, call: str) -> ToolResult:
        try:
            arguments = self.parse_call(call)
        except ValueError as exc:
            expected = ", ".join(self.parameters["properties"]) or "no arguments"
            return ToolResult(f"{self.tag}: {exc}; expected {expected}", ToolStatus.ERROR)
        result = self.connection.call(self.name, arguments, self.call_timeout_s)
        return ToolResult(_result_text(result), ToolStatus.ERROR if result.is_error else ToolStatus.OK)

    def close(self) -> None:
        self.connection.close()


def _result_text(result: Any) -> str:
    """The text of a ``CallToolResult``: text contents, other contents by type, else structured content."""
    parts = []
    for content in result.content:
        if getattr(content, "type", None) == "text":
            parts.append(content.text)
        else:
            mime = getattr(content, "mime_type", None) or getattr(content, "mimeType", None)
            parts.append(f"[{mime or getattr(content, 'type', 'unknown')} content]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured))
    return "\n".join(parts)


def build_mcp_tools(
    mcp: Mapping[str, Any],
    tools: Sequence[str] | None = None,
    call_timeout_s: float = 30.0,
    connect_timeout_s: float = 30.0,
) -> list[Tool]:
    """The tools of one MCP server (module docstring); raises McpError / ValueError naming the problem."""
    try:
        import mcp as _  # noqa: F401
    except ImportError:
        raise ImportError("MCP tools need the mcp package: pip install 'arpo[mcp]'") from None
    if not isinstance(mcp, Mapping):
        raise ValueError(
            f"mcp must be a mapping like {{command: [python, server.py]}} or {{url: ...}}, got {mcp!r}"
        )
    unknown = set(mcp) - {"command", "url", "env", "cwd", "headers"}
    if unknown:
        raise ValueError(f"unknown mcp keys {sorted(unknown)}; accepted: command, url, env, cwd, headers")
    connection = McpConnection(**mcp, connect_timeout_s=connect_timeout_s)
    try:
        listed = {spec.name: spec for spec in connection.tools}
        missing = [name for name in tools or [] if name not in listed]
        if missing:
            raise ValueError(
                f"MCP server {connection.where} has no tool {missing}; it lists {sorted(listed)}"
            )
        chosen = [listed[name] for name in tools] if tools else list(listed.values())
        if not chosen:
            raise ValueError(f"MCP server {connection.where} lists no tools")
        return [McpTool(connection, spec, call_timeout_s) for spec in chosen]
    except BaseException:
        connection.close()
        raise
