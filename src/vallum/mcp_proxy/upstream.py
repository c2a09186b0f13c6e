"""The connection to the upstream MCP server (a stdio command or a streamable HTTP URL), kept alive.

    async with Upstream(config.upstream, config.timeouts) as upstream:
        tools = await upstream.list_tools()         # JSON tool definitions, every page
        result = await upstream.call_tool(name, arguments)

Every request has a deadline; a server that does not answer in time, closes the connection (a crashed
stdio process), or answers with something that is not MCP raises `UpstreamError` with a message that says
which. A closed connection is reopened at the next request (a crashed server is started again), so one
crash costs one call, not the session. The client session lives in a task of its own: anyio ties a
connection's task group to the task that opened it, and requests arrive on many tasks.
"""

from __future__ import annotations

import logging
import shlex
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import httpx2
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from pydantic import ValidationError

from vallum.errors import VallumError
from vallum.mcp_proxy.config import Timeouts, UpstreamConfig

log = logging.getLogger("vallum.mcp_proxy")

MAX_LIST_PAGES = 100  # a server whose tool listing never ends is cut off here


class UpstreamError(VallumError):
    """The upstream server could not be reached, did not answer in time, or answered with garbage."""


@dataclass
class _Connection:
    client: Client | None = None
    error: BaseException | None = None
    closed: bool = False
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class Upstream:
    def __init__(self, config: UpstreamConfig, timeouts: Timeouts) -> None:
        self.config = config
        self.timeouts = timeouts
        self._group: TaskGroup | None = None
        self._connection: _Connection | None = None
        self._connecting = anyio.Lock()

    @property
    def label(self) -> str:
        return self.config.label

    async def __aenter__(self) -> Upstream:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._group is not None
        if self._connection is not None:
            self._connection.stop.set()
        # A server that ignores the end of its stdin is not waited for forever.
        self._group.cancel_scope.deadline = anyio.current_time() + self.timeouts.connect
        await self._group.__aexit__(kind, exc, tb)
        self._group = None

    # ---- requests --------------------------------------------------------------------------------------

    async def list_tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            client = await self._client()
            page = await self._request(
                "tools/list", self.timeouts.list_tools, client.list_tools, cursor=cursor, cache_mode="refresh"
            )
            tools.extend(
                tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in page.tools
            )
            cursor = page.next_cursor
            if cursor is None:
                return tools
        raise UpstreamError(f"{self.label}: the tool listing did not end after {MAX_LIST_PAGES} pages")

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        client = await self._client()
        result = await self._request(
            f"tools/call {name!r}", self.timeouts.call, client.call_tool, name, arguments
        )
        dumped: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped

    async def _request(self, what: str, timeout: float, method: Any, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        try:
            with anyio.fail_after(timeout):
                return await method(*args, **kwargs)
        except TimeoutError:
            raise UpstreamError(f"{self.label} did not answer {what} within {timeout:g} s") from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._drop(connection)
                raise UpstreamError(
                    f"{self.label} closed the connection during {what} (the server crashed or exited); "
                    "it is restarted at the next request"
                ) from exc
            raise UpstreamError(f"{self.label} answered {what} with error {exc.code}: {exc.message}") from exc
        except ValidationError as exc:
            raise UpstreamError(
                f"{self.label} answered {what} with something that is not MCP: {_first(exc)}"
            ) from exc
        except (httpx2.HTTPError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._drop(connection)
            raise UpstreamError(f"{self.label}: the connection failed during {what}: {exc!r}") from exc

    # ---- the connection --------------------------------------------------------------------------------

    async def _client(self) -> Client:
        async with self._connecting:
            connection = self._connection
            if connection is not None and connection.client is not None and not connection.closed:
                return connection.client
            return await self._connect()

    async def _connect(self) -> Client:
        if self._group is None:
            raise UpstreamError("the upstream connection is used outside `async with Upstream(...)`")
        connection = _Connection()
        self._group.start_soon(self._hold, connection)
        with anyio.move_on_after(self.timeouts.connect):
            await connection.ready.wait()
        if connection.client is None:
            connection.scope.cancel()
            why = (
                _describe(connection.error)
                if connection.error is not None
                else f"no MCP handshake within {self.timeouts.connect:g} s"
            )
            raise UpstreamError(f"cannot connect to {self._target()}: {why}")
        self._connection = connection
        return connection.client

    async def _hold(self, connection: _Connection) -> None:
        """Open the client, keep it open until told to stop, and record why it ended."""
        with connection.scope:
            try:
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(await self._open(stack))
                    connection.client = client
                    connection.ready.set()
                    await connection.stop.wait()
            except Exception as exc:  # whatever ends the connection is reported to the request that needs it
                connection.error = exc
                if connection.client is not None:
                    log.warning("upstream %s: connection ended: %s", self.label, _describe(exc))
        connection.closed = True
        connection.ready.set()

    async def _open(self, stack: AsyncExitStack) -> Client:
        if self.config.url is not None:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=self.config.headers,
                    timeout=httpx2.Timeout(self.timeouts.connect, read=max(self.timeouts.call, 300.0)),
                )
            )
            return Client(streamable_http_client(self.config.url, http_client=http), cache=None)
        command = self.config.command or ()
        parameters = StdioServerParameters(
            command=command[0], args=list(command[1:]), env=self.config.env or None, cwd=self.config.cwd
        )
        return Client(parameters, cache=None)

    def _drop(self, connection: _Connection | None) -> None:
        if connection is not None:
            connection.closed = True
            connection.stop.set()
        if self._connection is connection:
            self._connection = None

    def _target(self) -> str:
        if self.config.url is not None:
            return self.config.url
        return f"`{shlex.join(self.config.command or ())}`"


def _describe(exc: BaseException) -> str:
    """The innermost useful message of an exception (task groups wrap the real one in ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return f"error {exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _first(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    return f"{where}: {first['msg']}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
