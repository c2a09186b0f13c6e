"""LangChain tools and retrievers behind the tool-call firewall (optional: needs `langchain-core`).

    guard = AgentGuard()                                   # or AgentGuard(ToolFirewall(policy), task="...")
    tools = guard.wrap_tools([send_money, list_emails])    # BaseTools whose calls the firewall judges
    model.invoke(messages, config={"callbacks": [guard.callback()]})   # the guard learns the user's request

Each call of a guarded tool is judged on what this guard has seen of the run (vallum.agents.tool_path):
the task, the earlier calls, and their results as they came (untrusted). A call the firewall does not
allow never reaches the tool: its ToolMessage says why (`on_block="raise"` raises `ToolCallBlocked`
instead). Results are scanned for injections and sanitised, withheld or only reported; a guarded
retriever's documents count as tool results too, so a payment steered by a retrieved page is caught.

The user's request is the task: give it as `task=`, or let `guard.callback()` take it from the human
messages that the chat model is sent. A guard is one agent run's view: use a new one per conversation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    AsyncCallbackManagerForToolRun,
    BaseCallbackHandler,
    CallbackManagerForRetrieverRun,
    CallbackManagerForToolRun,
)
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from vallum.agents.firewall import ToolFirewall
from vallum.agents.tool_path import ConfirmMode, ResultMode, Ticket, ToolPath
from vallum.errors import VallumError

RESULT_METADATA_KEY = "vallum"
RETRIEVER_TOOL = "retrieve_documents"  # how retrieved documents are named in the transcript


class ToolCallBlocked(VallumError):
    """The firewall did not allow a tool call (raised only with `on_block="raise"`); `ticket` says why."""

    def __init__(self, ticket: Ticket) -> None:
        super().__init__(ticket.explain())
        self.ticket = ticket


class AgentGuard:
    """One agent run as the firewall sees it from the tools: the task, each call, each result."""

    def __init__(
        self,
        firewall: ToolFirewall | None = None,
        *,
        task: str | None = None,
        results: ResultMode | None = None,
        confirm: ConfirmMode = "block",
        on_block: Literal["message", "raise"] = "message",
        max_results: int = 200,
    ) -> None:
        self.path = ToolPath(firewall, task=task, results=results, confirm=confirm, max_results=max_results)
        self.on_block = on_block
        self.tickets: list[Ticket] = []  # every decision of this run, in order
        self._offered: dict[str, dict[str, Any]] = {}

    @property
    def task(self) -> str | None:
        return self.path.transcript.task

    def wrap_tools(self, tools: Sequence[BaseTool]) -> list[BaseTool]:
        """The tools, each judged before it runs; together they are what the agent is offered."""
        wrapped: list[BaseTool] = []
        for tool in tools:
            self._offered[tool.name] = convert_to_openai_tool(tool)
            wrapped.append(GuardedTool.around(tool, self))
        return wrapped

    def wrap_retriever(self, retriever: BaseRetriever) -> BaseRetriever:
        """The retriever, its documents recorded as untrusted tool results and sanitised like them."""
        return GuardedAgentRetriever(retriever=retriever, guard=self)

    def callback(self) -> BaseCallbackHandler:
        """A callback for the chat model that takes the user's request from the messages it is sent."""
        return _TaskListener(self)

    def observe(self, messages: Sequence[BaseMessage]) -> None:
        """Take the user's request from a conversation (all human turns), unless a task was given."""
        said = [m.text for m in messages if isinstance(m, HumanMessage) and m.text]
        if said and self.path.transcript.task != "\n".join(said):
            self.path.transcript.task = "\n".join(said)

    # ---- one call --------------------------------------------------------------------------------------

    def authorise(self, name: str, arguments: dict[str, Any]) -> Ticket:
        ticket = self.path.authorise(name, arguments, list(self._offered.values()))
        self.tickets.append(ticket)
        if not ticket.forwarded and self.on_block == "raise":
            raise ToolCallBlocked(ticket)
        return ticket

    def screen(self, ticket: Ticket, output: Any) -> Any:
        """A tool's output as the model may see it: unchanged, with injected passages removed, or withheld."""
        pieces = list(_texts(output))
        clean, findings, action = self.path.screen(ticket, pieces)
        if action == "withheld":
            return (
                f"vallum withheld the result of {ticket.tool!r}: it carries a prompt injection "
                f"({'; '.join(f.message for f in findings)})"
            )
        if action == "sanitized":
            return _replace(output, "output", clean)
        return output


class GuardedTool(BaseTool):
    """A LangChain tool whose calls the firewall judges and whose results it scans."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tool: BaseTool
    guard: AgentGuard

    @classmethod
    def around(cls, tool: BaseTool, guard: AgentGuard) -> GuardedTool:
        return cls(
            name=tool.name,
            description=tool.description,
            args_schema=tool.args_schema,
            return_direct=tool.return_direct,
            tool=tool,
            guard=guard,
        )

    def _run(self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        ticket = self.guard.authorise(self.name, _arguments(args, kwargs))
        if not ticket.forwarded:
            return ticket.explain()
        config = RunnableConfig(callbacks=run_manager.get_child()) if run_manager is not None else None
        output = self.tool.invoke(ticket.arguments, config)
        return self.guard.screen(ticket, output)

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        ticket = self.guard.authorise(self.name, _arguments(args, kwargs))
        if not ticket.forwarded:
            return ticket.explain()
        config = RunnableConfig(callbacks=run_manager.get_child()) if run_manager is not None else None
        output = await self.tool.ainvoke(ticket.arguments, config)
        return self.guard.screen(ticket, output)


class GuardedAgentRetriever(BaseRetriever):
    """A retriever whose documents join the run's evidence as untrusted content, sanitised as tool results."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    guard: AgentGuard

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        documents = self.retriever.invoke(query, {"callbacks": run_manager.get_child()}, **kwargs)
        return self._screened(query, documents)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        documents = await self.retriever.ainvoke(query, {"callbacks": run_manager.get_child()}, **kwargs)
        return self._screened(query, documents)

    def _screened(self, query: str, documents: Sequence[Document]) -> list[Document]:
        # Retrieval is reading, which the run is there to do: it is recorded, never refused.
        path = self.guard.path
        ticket = path.reading(RETRIEVER_TOOL, {"query": query})
        pieces = [
            (f"documents[{i}]", d.page_content) for i, d in enumerate(documents) if d.page_content.strip()
        ]
        clean, findings, action = path.screen(ticket, pieces)
        out = []
        for i, document in enumerate(documents):
            where = f"documents[{i}]"
            mine = [f.to_dict() for f in findings if _about(f.message, where)]
            if action == "withheld" and mine:
                continue
            text = clean.get(where, document.page_content) if action == "sanitized" else document.page_content
            metadata = {
                **document.metadata,
                RESULT_METADATA_KEY: {"action": action if mine else "pass", "findings": mine},
            }
            out.append(Document(page_content=text, metadata=metadata, id=document.id))
        return out


class _TaskListener(BaseCallbackHandler):
    """Feeds the human turns of each chat-model call to the guard as the user's request."""

    def __init__(self, guard: AgentGuard) -> None:
        self.guard = guard

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        if messages:
            self.guard.observe(messages[0])


def _about(message: str, where: str) -> bool:
    """Whether a result finding (".. carries a prompt injection in WHERE: 'evidence'") is about `where`."""
    return message.endswith(f" in {where}") or f" in {where}: " in message


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (a single-input tool may be called with one positional string)."""
    if args and not kwargs:
        return {"input": args[0]} if len(args) == 1 else {f"arg{i}": a for i, a in enumerate(args)}
    return dict(kwargs)


def _texts(output: Any, path: str = "output") -> list[tuple[str, str]]:
    """The texts of a tool's output, each with where it sits: output, output.items[0].body, ..."""
    if isinstance(output, str):
        return [(path, output)] if output.strip() else []
    if isinstance(output, BaseMessage):
        return _texts(output.content, path)
    if isinstance(output, dict):
        return [piece for key, item in output.items() for piece in _texts(item, f"{path}.{key}")]
    if isinstance(output, (list, tuple)):
        return [piece for i, item in enumerate(output) for piece in _texts(item, f"{path}[{i}]")]
    if output is None or isinstance(output, (int, float, bool)):
        return []
    return [(path, json.dumps(output, default=str, ensure_ascii=False))]


def _replace(output: Any, path: str, clean: dict[str, str]) -> Any:
    if isinstance(output, str):
        return clean.get(path, output)
    if isinstance(output, dict):
        return {key: _replace(item, f"{path}.{key}", clean) for key, item in output.items()}
    if isinstance(output, list):
        return [_replace(item, f"{path}[{i}]", clean) for i, item in enumerate(output)]
    if isinstance(output, tuple):
        return tuple(_replace(item, f"{path}[{i}]", clean) for i, item in enumerate(output))
    if path in clean:  # an object the tool returned whole is given back as its sanitised text
        return clean[path]
    return output
