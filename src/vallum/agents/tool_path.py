"""The firewall placed in an agent's tool path (the MCP proxy, the LangChain tool wrapper), not around its chat.

    path = ToolPath(firewall, task="Pay the bill in invoice-march.txt")
    ticket = path.authorise("send_money", {"recipient": ..., "amount": 180.0}, tools)
    if ticket.forwarded:
        output = run_the_tool(...)
        clean, findings, action = path.screen(ticket, [("output", output)])

Such a guard sees calls and results, not the conversation: each call is judged on the transcript of what
went through it (transcript.py), with the task standing in for the user's request when one is known
(given, or learned later from the chat). Until there is a task, the check that a side effect was asked
for (`unsupported_action`) is off: nothing could pass it. A call the firewall fails on gets the policy's fail mode (never a crash, never a silent allow). A call the
firewall would put to a person is blocked or allowed as `confirm` says: a tool path has nobody to ask.
Results are scanned for injections and, as `results` says (default: the policy's injection.action),
sanitised, withheld or only reported; the transcript keeps them as they came, for the data-flow checks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vallum.agents.findings import AgentDecision, AgentFinding, CallDecision, Decision, Effect, Origin
from vallum.agents.firewall import ToolFirewall
from vallum.agents.policy import AgentPolicy
from vallum.agents.transcript import Exchange, Transcript

log = logging.getLogger(__name__)

ResultMode = Literal["sanitize", "block", "flag"]
ResultAction = Literal["pass", "sanitized", "withheld"]
ConfirmMode = Literal["block", "allow"]
UNJUDGED_RULE = "VAL-AGT-0020"  # malformed_call in rules/agent_tools.yaml: the call cannot be judged
_FAIL_EFFECT = {"closed": Effect.BLOCK, "confirm": Effect.CONFIRM, "open": Effect.FLAG}


@dataclass(frozen=True, slots=True)
class Ticket:
    """A call on its way: the firewall's verdict, and whether it goes to the tool."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    decision: CallDecision
    conversation: tuple[AgentFinding, ...] = ()  # findings about the session (injections seen earlier)
    policy_version: str = ""

    @property
    def forwarded(self) -> bool:
        return self.decision.action is Decision.ALLOW

    def explain(self) -> str:
        """Why a call was not forwarded, in a sentence a model (and a person) can act on."""
        reasons = [f for f in self.decision.findings if f.effect is not Effect.FLAG] or list(
            self.decision.findings
        )
        text = f"vallum blocked the call to {self.tool!r}: " + "; ".join(
            f"[{f.rule} {f.name}] {f.message}" for f in reasons
        )
        if any(f.effect is Effect.CONFIRM for f in reasons):
            text += " (this call needs a person's approval, and there is nobody to ask in the tool path)"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            **self.decision.to_dict(),
            "forwarded": self.forwarded,
            "session_findings": [f.to_dict() for f in self.conversation],
            "policy_version": self.policy_version,
        }


class ToolPath:
    def __init__(
        self,
        firewall: ToolFirewall | None = None,
        *,
        task: str | None = None,
        results: ResultMode | None = None,
        confirm: ConfirmMode = "block",
        max_results: int = 200,
    ) -> None:
        self.firewall = firewall if firewall is not None else ToolFirewall()
        taskless = session_policy(self.firewall.policy, None)
        self.taskless = self.firewall
        if taskless is not self.firewall.policy:
            self.taskless = ToolFirewall(taskless, self.firewall.guard, classifier=self.firewall.classifier)
            self.taskless.scanner = self.firewall.scanner  # one scan (and one cache) per tool result
        self.transcript = Transcript(task, max_results=max_results)
        self.results: ResultMode = results or self.firewall.policy.injection.action
        self.confirm = confirm
        self._fail = _FAIL_EFFECT[self.firewall.policy.fail_mode]

    def authorise(self, name: str, arguments: Mapping[str, Any] | None, tools: Sequence[Any]) -> Ticket:
        """Judge one call (OpenAI-format `tools`: what the agent was offered) on the transcript so far."""
        call_id = self.transcript.next_call_id()
        args = dict(arguments or {})
        firewall = self.firewall if self.transcript.task else self.taskless
        try:
            verdict = firewall.check(self.transcript.messages([(call_id, name, args)]), list(tools))
        except Exception as exc:  # never a crash, never a silently allowed call: the fail mode decides
            log.exception("the firewall failed on a call to %s", name)
            verdict = self._unjudged(call_id, name, exc)
        decision = verdict.calls[0]
        if decision.action is Decision.CONFIRM:
            decision = self._unconfirmed(decision)
        return Ticket(call_id, name, args, decision, verdict.findings, verdict.policy_version)

    def refuse(self, call_id: str, name: str, arguments: Mapping[str, Any], finding: AgentFinding) -> Ticket:
        """A ticket for a call refused before the firewall saw it (a tool that is withheld or unknown)."""
        decision = CallDecision(call_id, name, Decision.BLOCK, (finding,), True)
        return Ticket(call_id, name, dict(arguments), decision, (), self.firewall.policy.label)

    def reading(self, name: str, arguments: Mapping[str, Any]) -> Ticket:
        """A ticket for content the agent reads without a judged call (retrieved documents): only its
        result is screened and recorded."""
        call_id = self.transcript.next_call_id()
        decision = CallDecision(call_id, name, Decision.ALLOW, (), False)
        return Ticket(call_id, name, dict(arguments), decision, (), self.firewall.policy.label)

    def screen(
        self, ticket: Ticket, pieces: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, str], tuple[AgentFinding, ...], ResultAction]:
        """Record a tool's result (its texts, each with where it sits) and judge it.

        Returns the sanitised text of each injected piece by where it sits (to put in place of the
        original when the action is "sanitized"), the findings, and the action.
        """
        # Tools often return the same text twice (as content and as structured data): judged once.
        distinct = list(dict.fromkeys(text for _, text in pieces))
        index = self.transcript.result_index()
        self.transcript.record(Exchange(ticket.call_id, ticket.tool, ticket.arguments, "\n".join(distinct)))
        scans = dict(zip(distinct, self.firewall.scanner.scan(distinct), strict=True)) if distinct else {}
        injected = [(where, text) for where, text in pieces if scans[text].injected]
        if not injected:
            return {}, (), "pass"
        findings = []
        for where, text in dict((text, (where, text)) for where, text in injected).values():
            scan = scans[text]
            best = max(scan.findings, key=lambda f: f.score, default=None)
            evidence = f": {best.evidence[:120]!r}" if best is not None and best.evidence else ""
            findings.append(
                AgentFinding(
                    self.firewall.classifier.rule_ids["injected_tool_result"],
                    "injected_tool_result",
                    Effect.BLOCK if self.results == "block" else Effect.FLAG,
                    f"the result of {ticket.tool!r} carries a prompt injection in {where}{evidence}",
                    origin=Origin(index, "tool", "injected", ticket.tool, ticket.call_id, scan.regions[0]),
                )
            )
        if self.results == "block":
            return {}, tuple(findings), "withheld"
        if self.results == "sanitize":
            return (
                {where: self.firewall.sanitize(text)[0] for where, text in injected},
                tuple(findings),
                "sanitized",
            )
        return {}, tuple(findings), "pass"

    def _unjudged(self, call_id: str, name: str, exc: Exception) -> AgentDecision:
        finding = AgentFinding(
            UNJUDGED_RULE,
            "malformed_call",
            self._fail,
            f"the call to {name!r} could not be judged ({type(exc).__name__}: {exc}); "
            f"fail mode {self.firewall.policy.fail_mode}",
        )
        call = CallDecision(call_id, name, self._fail.decision, (finding,), True)
        return AgentDecision(self._fail.decision, (call,), (), self.firewall.policy.label)

    def _unconfirmed(self, decision: CallDecision) -> CallDecision:
        if self.confirm == "allow":
            findings = tuple(as_flag(f) if f.effect is Effect.CONFIRM else f for f in decision.findings)
            action = Decision.ALLOW
        else:
            findings, action = decision.findings, Decision.BLOCK
        return CallDecision(
            decision.id, decision.name, action, findings, decision.side_effects, decision.effects
        )


def session_policy(policy: AgentPolicy, task: str | None) -> AgentPolicy:
    """The policy for a tool path: without the user's task, nothing says whether an effect was asked for."""
    if task or policy.data_flow.unsupported_action == "allow":
        return policy
    fields = {name: getattr(policy, name) for name in type(policy).model_fields}
    fields["data_flow"] = policy.data_flow.model_copy(update={"unsupported_action": "allow"})
    return type(policy)(**fields)


def as_flag(finding: AgentFinding) -> AgentFinding:
    """The same finding, only reported."""
    return AgentFinding(
        finding.rule,
        finding.name,
        Effect.FLAG,
        finding.message,
        finding.argument,
        finding.value,
        finding.kind,
        finding.origin,
    )
