"""The MCP server that clients talk to, forwarding to the upstream server through the gate.

    proxy = McpProxy(config)
    await proxy.serve_stdio()                   # the client started us over stdio
    app = proxy.http_app(); uvicorn.run(app)    # or streamable HTTP on /mcp

`tools/list` fetches the upstream listing afresh each time (a rug pull shows at the next listing) and
returns the tools the gate shows. `tools/call` goes to the firewall first; a call it does not allow gets
an error result that names its findings, and is never forwarded. A forwarded call's result is screened
before the client sees it. The upstream failing in any way (no answer in time, a crash, garbage) is an
error result that says so; the proxy itself stays up. Every result carries the decision in
`_meta["vallum/decision"]`. Only tools are proxied: the upstream's resources, prompts and instructions are
not passed on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette

from vallum import __version__
from vallum.mcp_proxy.config import ProxyConfig
from vallum.mcp_proxy.gate import Listing, ToolGate, ToolVerdict
from vallum.mcp_proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("vallum.mcp_proxy")

SERVER_NAME = "vallum-mcp-proxy"
INSTRUCTIONS = (
    "The tools of this server are those of {label}, checked by vallum: calls that an injected tool "
    "result steers, or that send data somewhere nobody asked for, are refused with an explanation."
)


class McpProxy:
    def __init__(self, config: ProxyConfig, gate: ToolGate | None = None) -> None:
        self.config = config
        self.gate = gate if gate is not None else ToolGate(config)
        self._upstream: Upstream | None = None

    # ---- transports ------------------------------------------------------------------------------------

    async def serve_stdio(self) -> None:
        async with self.connected():
            server = self.server()
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

    def http_app(self, *, host: str = "127.0.0.1", path: str = "/mcp") -> Starlette:
        """A Starlette app serving the proxy over streamable HTTP at `path`; the upstream opens with it."""
        server = self.server()
        app = server.streamable_http_app(streamable_http_path=path, host=host)
        sessions = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(starlette: Starlette) -> AsyncIterator[None]:
            async with self.connected(), sessions(starlette):
                yield

        app.router.lifespan_context = lifespan
        return app

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[Upstream]:
        """The upstream connection, open while the block runs (the proxy's handlers use it)."""
        async with Upstream(self.config.upstream, self.config.timeouts) as upstream:
            self._upstream = upstream
            try:
                yield upstream
            finally:
                self._upstream = None

    def server(self) -> Server[Any]:
        return Server(
            SERVER_NAME,
            version=__version__,
            instructions=INSTRUCTIONS.format(label=self.config.upstream.label),
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
        )

    # ---- what the client asks --------------------------------------------------------------------------

    async def listing(self) -> Listing:
        tools = await self._live().list_tools()
        return await anyio.to_thread.run_sync(self.gate.review, tools)

    async def call(self, name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
        """A tool call through the gate; the result (JSON) the client gets, error results included."""
        if not self.gate.knows(name):  # a client that did not list through us (or a cached listing)
            try:
                await self.listing()
            except UpstreamError as exc:
                log.warning("cannot list the tools of %s before a call: %s", self.config.upstream.label, exc)
        ticket = await anyio.to_thread.run_sync(self.gate.authorise, name, arguments)
        if not ticket.forwarded:
            return self.gate.refusal(ticket)
        try:
            result = await self._live().call_tool(name, ticket.arguments)
        except UpstreamError as exc:
            return self.gate.failure(ticket, str(exc))
        limit = self.config.max_result_chars
        if (size := len(json.dumps(result))) > limit:
            return self.gate.failure(
                ticket, f"its result is {size} characters, over max_result_chars ({limit})"
            )
        screened = await anyio.to_thread.run_sync(self.gate.screen, ticket, result)
        return screened.result

    async def approve(self) -> list[ToolVerdict]:
        """Pin every tool of the upstream as it is now (`vallum mcp-proxy --approve`)."""
        tools = await self._live().list_tools()
        return await anyio.to_thread.run_sync(self.gate.approve, tools)

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            listing = await self.listing()
        except UpstreamError as exc:
            raise MCPError(types.INTERNAL_ERROR, f"vallum: {exc}") from exc
        return types.ListToolsResult(tools=[types.Tool.model_validate(tool) for tool in listing.tools])

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        result = await self.call(params.name, params.arguments)
        try:
            return types.CallToolResult.model_validate(result)
        except ValueError as exc:  # the upstream's result does not survive the trip back: say so
            log.warning("result of %s is not a valid MCP result: %s", params.name, exc)
            return types.CallToolResult(
                content=[
                    types.TextContent(
                        type="text", text=f"vallum: the result of {params.name!r} is not valid MCP"
                    )
                ],
                is_error=True,
            )

    def _live(self) -> Upstream:
        if self._upstream is None:
            raise UpstreamError("the proxy is not connected (use `async with proxy.connected()`)")
        return self._upstream
