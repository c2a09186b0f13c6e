"""What a guard in the tool path has seen of an agent's run, as the OpenAI-format conversation the firewall reads.

The MCP proxy and the LangChain tool wrapper see calls and results, not the chat: the transcript is the
task (as the user's message, when known), then each forwarded call as an assistant message with its
tool result after it.
The results are kept as the server sent them, before any sanitising: the firewall needs the injected
passages to recognise values taken from them. The oldest results are dropped beyond `max_results`;
values seen only in a dropped result count as unknown rather than untrusted from then on.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Exchange:
    call_id: str
    tool: str
    arguments: dict[str, Any]
    result: str


class Transcript:
    def __init__(self, task: str | None = None, *, max_results: int = 200) -> None:
        self.task = task
        self._exchanges: deque[Exchange] = deque(maxlen=max_results)
        self._lock = threading.Lock()
        self._counter = 0

    def next_call_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"mcp-{self._counter}"

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def result_index(self) -> int:
        """The index in `messages()` that the next recorded result will have (until older ones drop out)."""
        with self._lock:
            kept = min(len(self._exchanges) + 1, self._exchanges.maxlen or 0)
        return (1 if self.task else 0) + 2 * kept - 1

    def messages(self, pending: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """The conversation so far, ending with an assistant message that makes the `pending` calls
        (call id, tool name, arguments)."""
        with self._lock:
            exchanges = list(self._exchanges)
        out: list[dict[str, Any]] = []
        if self.task:
            out.append({"role": "user", "content": self.task})
        for exchange in exchanges:
            out.append(_assistant([(exchange.call_id, exchange.tool, exchange.arguments)]))
            out.append({"role": "tool", "tool_call_id": exchange.call_id, "content": exchange.result})
        out.append(_assistant(pending))
        return out


def _assistant(calls: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            for call_id, name, arguments in calls
        ],
    }
