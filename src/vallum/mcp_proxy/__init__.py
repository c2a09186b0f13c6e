"""`vallum mcp-proxy`: the tool-call firewall in front of an MCP server (optional: needs the `mcp` SDK).

    vallum mcp-proxy --upstream-command "python server.py" --pins mcp-pins.json

The proxy is an MCP server to its client and an MCP client to the upstream server (stdio or streamable
HTTP). It withholds tools whose descriptions carry instructions for the model (poisoning.py) or whose
definitions changed after approval (pins.py), judges every call with the tool-call firewall on what the
session has seen so far (gate.py, vallum.agents.transcript), and scans results for injections before the client sees
them. Modules: config (the settings), upstream (the connection to the server), server (the MCP server the
client sees), cli (the command).
"""

from __future__ import annotations

from vallum.agents.tool_path import Ticket
from vallum.mcp_proxy.config import ProxyConfig
from vallum.mcp_proxy.gate import Listing, Screened, ToolGate, ToolVerdict
from vallum.mcp_proxy.pins import PinStore, tool_digest
from vallum.mcp_proxy.poisoning import DescriptionScanner

__all__ = [
    "DescriptionScanner",
    "Listing",
    "PinStore",
    "ProxyConfig",
    "Screened",
    "Ticket",
    "ToolGate",
    "ToolVerdict",
    "tool_digest",
]
