"""Provenance-aware tool-call authorisation for agents (the tool-call firewall).

>>> from vallum.agents import ToolFirewall
>>> decision = ToolFirewall().check(messages, tools)   # OpenAI chat format; the last message holds the calls
>>> decision.action, [(c.id, c.action) for c in decision.calls]

Modules: conversation (OpenAI messages in), provenance (values and where they came from), tool_classes
(read-only or side-effecting, and what the user asked for), injection (injected spans of tool results),
policy (the agent policy), constraints (argument rules), ratelimit, findings (decisions out), firewall (the
rules in order) and cli (`vallum agent check`).
"""

from __future__ import annotations

from vallum.agents.conversation import AgentInputError, Conversation, parse_conversation
from vallum.agents.findings import AgentDecision, AgentFinding, CallDecision, Decision, Effect, Origin
from vallum.agents.firewall import ToolFirewall
from vallum.agents.policy import AgentPolicy
from vallum.agents.tool_classes import ToolClass, ToolClassifier, default_classifier

__all__ = [
    "AgentDecision",
    "AgentFinding",
    "AgentInputError",
    "AgentPolicy",
    "CallDecision",
    "Conversation",
    "Decision",
    "Effect",
    "Origin",
    "ToolClass",
    "ToolClassifier",
    "ToolFirewall",
    "default_classifier",
    "parse_conversation",
]
