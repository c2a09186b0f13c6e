"""The tool-call firewall: allow, confirm or block the calls an agent is about to make.

    firewall = ToolFirewall()                       # default agent policy, default Guard
    decision = firewall.check(messages, tools)      # OpenAI chat messages; the last one holds the calls
    decision.action, [c.action for c in decision.calls]

For each call of the conversation's last assistant message, in this order:

1. the call must be readable (a name, arguments that are a JSON object) and name a tool the request
   offered; otherwise the policy's fail mode, or `unknown_tools`, decides;
2. the policy's entry for the tool: `deny`, `confirm`, argument constraints (JSON Schema, RE2 patterns,
   allow-lists) and rate limits; `allow` skips steps 3 and 4;
3. data flow: every value in the arguments is traced to where it was seen (provenance.py). A value that
   occurs only inside an injected passage of a tool result is the attacker's: blocked, whatever the tool.
   A side-effecting call whose destination (address, account, URL, phone, path) occurs only in untrusted
   content that the user did not point the agent at is blocked; reading is how agents work, so read-only
   calls with untrusted values are allowed;
4. the request: a side-effecting call whose effect (message, payment, deletion, ...) the user's request
   does not ask for at all needs a human's approval (`confirm`): the words of a request are weak
   evidence, so the firewall asks rather than refuses; a request that delegates to a document
   ("follow the instructions in ...") supports every effect.

Every finding names the argument, the value, its kind and the message it came from. Tool results are
scanned by the Guard once each (cached by content), in one batch per conversation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vallum.agents.constraints import Constraints
from vallum.agents.conversation import (
    ChatMessage,
    Conversation,
    ToolCall,
    Trust,
    parse_conversation,
)
from vallum.agents.findings import (
    AgentDecision,
    AgentFinding,
    CallDecision,
    Decision,
    Effect,
    Origin,
    strictest,
)
from vallum.agents.injection import MIN_PASSAGE_CHARS, InjectionScanner, ScannedText, passage_key
from vallum.agents.policy import AgentPolicy, ToolPolicy
from vallum.agents.provenance import (
    DESTINATION_KINDS,
    Evidence,
    Kind,
    Provenance,
    Sighting,
    SourceText,
    Value,
    extract_values,
    provenance,
)
from vallum.agents.ratelimit import RateLimiter
from vallum.agents.tool_classes import (
    Request,
    ToolClass,
    ToolClassifier,
    default_classifier,
    parameter_names,
    parse_request,
)
from vallum.core.guard import Guard
from vallum.core.types import Finding, Identity, Span
from vallum.errors import PolicyError

MIN_DIRECTING_CHARS = 3  # shorter argument strings do not point at anything in particular
MIN_SPECIFIC_CHARS = 4  # shorter free-text values are not evidence of an injection's choice
_DATE_LIKE = re.compile(r"[\d\s:./+tz-]+(?:am|pm)?")
_FAIL_EFFECT = {"closed": Effect.BLOCK, "confirm": Effect.CONFIRM, "open": Effect.FLAG}
_REACTION = {"flag": Effect.FLAG, "confirm": Effect.CONFIRM, "block": Effect.BLOCK}


class ToolFirewall:
    def __init__(
        self,
        policy: AgentPolicy | str | Path | None = None,
        guard: Guard | None = None,
        *,
        classifier: ToolClassifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy is None:
            policy = AgentPolicy()
        elif not isinstance(policy, AgentPolicy):
            policy = AgentPolicy.from_file(policy)
        self.policy = policy
        self.guard = guard if guard is not None else Guard(policy.guard)
        self.classifier = classifier or default_classifier()
        self.scanner = InjectionScanner(
            self.guard,
            max_chars=policy.limits.max_tool_result_chars,
            fail_closed=policy.fail_mode != "open",
        )
        self.rate_limiter = RateLimiter(clock)
        self._constraints: dict[str, Constraints] = {}
        self._fail = _FAIL_EFFECT[policy.fail_mode]

    # ---- public API ----------------------------------------------------------------------------------------

    def check(
        self, messages: Any, tools: Any = None, identity: Identity | str | None = None
    ) -> AgentDecision:
        """Judge the tool calls of the last message. Raises AgentInputError when there is nothing to judge."""
        return self.judge(parse_conversation(messages, tools), identity)

    def sanitize(self, tool_result_text: str) -> tuple[str, list[Finding]]:
        """A tool result with its injected passages removed (the rest kept), and the Guard's findings."""
        return self.scanner.sanitize(tool_result_text)

    def judge(self, conversation: Conversation, identity: Identity | str | None = None) -> AgentDecision:
        findings = self._problems(conversation)
        results = [
            m for m in conversation.messages if m.role in ("tool", "function") or m.trust is Trust.UNTRUSTED
        ]
        scans = dict(
            zip((m.index for m in results), self.scanner.scan([m.text for m in results]), strict=True)
        )
        findings += self._injection_findings(conversation, scans)
        evidence = self._evidence(conversation, scans)
        request = parse_request(conversation.user_request())
        delegated = self.classifier.delegates(request)
        injected_before = [i for i, s in scans.items() if s.injected]
        who = _identity_key(identity)
        conversation_effect = strictest([f.effect.decision for f in findings])
        calls = []
        for k, call in enumerate(conversation.pending):
            if k >= self.policy.limits.max_calls:
                over = self._finding(
                    "malformed_call",
                    Effect.BLOCK,
                    f"more than {self.policy.limits.max_calls} calls in one message (limits.max_calls)",
                )
                calls.append(CallDecision(call.id, call.name, Decision.BLOCK, (over,), True))
                continue
            decision = self._judge_call(
                call, conversation, evidence, request, delegated, injected_before, who, conversation_effect
            )
            calls.append(decision)
        action = strictest([c.action for c in calls])
        return AgentDecision(action, tuple(calls), tuple(findings), self.policy.label)

    # ---- one call ------------------------------------------------------------------------------------------

    def _judge_call(
        self,
        call: ToolCall,
        conversation: Conversation,
        evidence: list[Evidence],
        request: Request,
        delegated: bool,
        injected_before: list[int],
        who: str,
        conversation_effect: Decision,
    ) -> CallDecision:
        found: list[AgentFinding] = []
        if call.error is not None or call.name is None or call.arguments is None:
            found.append(self._finding("malformed_call", self._fail, call.error or "the call cannot be read"))
            return _decided(call, found, ToolClass(True, (), "unreadable"), floor=conversation_effect)
        name, arguments = call.name, call.arguments
        rule = self.policy.tool(name)
        spec = conversation.tools.get(name)
        if conversation.tools and spec is None:
            found.append(
                self._finding(
                    "unknown_tool",
                    _REACTION[self.policy.unknown_tools]
                    if self.policy.unknown_tools != "allow"
                    else Effect.FLAG,
                    f"{name!r} is not one of the tools the request offered",
                )
            )
        klass = self._class(name, spec.description if spec else "", spec.parameters if spec else {}, rule)
        vouched: set[str] = set()
        if rule is not None:
            vouched = self._tool_rules(name, rule, arguments, found)
        if rule is None or rule.action != "allow":
            self._data_flow(call, klass, evidence, vouched, injected_before, conversation, found)
            if klass.side_effects and not delegated and not self.classifier.supported(klass.effects, request):
                reaction = self.policy.data_flow.unsupported_action
                if reaction != "allow":
                    effects = ", ".join(klass.effects)
                    found.append(
                        self._finding(
                            "unsupported_action",
                            _REACTION[reaction],
                            f"{name!r} has side effects ({effects}) that nothing in the user's request asks for",
                        )
                    )
        decision = _decided(call, found, klass, floor=conversation_effect)
        limit = (rule.rate_limit if rule is not None else None) or self.policy.default_rate_limit
        if (
            limit is not None
            and decision.action is not Decision.BLOCK
            and not self.rate_limiter.admit(name, who, limit)
        ):
            found.append(
                self._finding(
                    "rate_limited",
                    Effect.BLOCK,
                    f"{name!r} was called {limit.calls} times in the last {limit.per_seconds:g} s"
                    + (f" by {who!r}" if limit.by == "identity" else ""),
                )
            )
            decision = _decided(call, found, klass, floor=conversation_effect)
        return decision

    def _class(
        self, name: str, description: str, parameters: dict[str, Any], rule: ToolPolicy | None
    ) -> ToolClass:
        klass = self.classifier.classify(name, description, parameter_names(parameters))
        if rule is not None and (rule.side_effects is not None or rule.effects is not None):
            side = rule.side_effects if rule.side_effects is not None else klass.side_effects
            effects = rule.effects if rule.effects is not None else klass.effects
            klass = ToolClass(side, tuple(effects) if side else (), "policy")
        return klass

    def _tool_rules(
        self, name: str, rule: ToolPolicy, arguments: dict[str, Any], found: list[AgentFinding]
    ) -> set[str]:
        if rule.action == "deny":
            found.append(self._finding("tool_denied", Effect.BLOCK, f"the policy denies {name!r}"))
        elif rule.action == "confirm":
            found.append(
                self._finding(
                    "tool_needs_confirmation", Effect.CONFIRM, f"the policy requires approval for {name!r}"
                )
            )
        constraints = self._constraints.get(name)
        if constraints is None or constraints.rules is not rule.arguments:
            constraints = self._constraints[name] = Constraints(rule.arguments)
        violations, vouched = constraints.check(arguments)
        for v in violations:
            found.append(self._finding(v.name, Effect.BLOCK, v.message, argument=v.argument, value=v.value))
        return vouched

    def _data_flow(
        self,
        call: ToolCall,
        klass: ToolClass,
        evidence: list[Evidence],
        vouched: set[str],
        injected_before: list[int],
        conversation: Conversation,
        found: list[AgentFinding],
    ) -> None:
        mode = self.policy.injection.action
        rules = self.policy.data_flow
        if mode == "block" and injected_before:
            first = conversation.messages[injected_before[0]]
            found.append(
                self._finding(
                    "injected_tool_result",
                    Effect.BLOCK,
                    f"{_where(first)} carries a prompt injection, and injection.action is block: "
                    "no call runs after it",
                    origin=Origin(first.index, first.role, "injected", first.tool, first.tool_call_id),
                )
            )
        assert call.arguments is not None
        carried = self._carried(call.arguments, evidence, found)
        for value in extract_values(call.arguments):
            if value.argument in carried or any(
                value.argument == p or value.argument.startswith((p + ".", p + "[")) for p in vouched
            ):
                continue
            level, seen = provenance(value, evidence)
            destination = value.kind in DESTINATION_KINDS and (
                value.whole or self.classifier.is_destination(value.argument)
            )
            # Reading is how agents work: a read-only call is the attacker's only where it goes somewhere
            # the injection chose (a URL it planted); a side-effecting call, wherever it carries its words.
            attackers = _specific(value) if klass.side_effects else destination
            if level is Provenance.INJECTED and mode != "flag" and attackers:
                found.append(
                    self._value_finding("injected_value", _REACTION[rules.injected_value], value, level, seen)
                )
                continue
            if not klass.side_effects:
                continue
            if destination and level in (Provenance.UNTRUSTED, Provenance.INJECTED):
                found.append(
                    self._value_finding(
                        "untrusted_destination", _REACTION[rules.untrusted_destination], value, level, seen
                    )
                )
            elif destination and level is Provenance.UNKNOWN and rules.unknown_destination != "allow":
                found.append(
                    self._value_finding(
                        "unknown_destination", _REACTION[rules.unknown_destination], value, level, seen
                    )
                )
            if (
                value.kind is Kind.CARD
                and level is not Provenance.TRUSTED
                and rules.sensitive_egress != "allow"
            ):
                found.append(
                    self._value_finding(
                        "sensitive_egress", _REACTION[rules.sensitive_egress], value, level, seen
                    )
                )

    def _carried(
        self, arguments: dict[str, Any], evidence: list[Evidence], found: list[AgentFinding]
    ) -> set[str]:
        """Arguments that repeat a whole injected passage: they name or quote the injected content (a channel
        whose name is the injection) rather than pick values out of it."""
        cores = [(item, core) for item in evidence for core in item.cores]
        if not cores:
            return set()
        carried = set()
        for path, text in _string_leaves(arguments, ""):
            if len(text) < MIN_PASSAGE_CHARS:
                continue
            key = passage_key(text)
            for item, core in cores:
                if core in key:
                    carried.add(path)
                    found.append(
                        self._finding(
                            "carried_injection",
                            Effect.FLAG,
                            f"argument {path!r} repeats a whole injected passage of {_evidence_where(item)}",
                            argument=path,
                            origin=Origin(item.index, item.role, "injected", item.tool, item.tool_call_id),
                        )
                    )
                    break
        return carried

    # ---- the conversation --------------------------------------------------------------------------------

    def _evidence(self, conversation: Conversation, scans: dict[int, ScannedText]) -> list[Evidence]:
        """Every message values may come from, in order, with each tool result marked by who chose what it
        fetched: the user (directed), an injection (its whole text counts as injected), or neither."""
        evidence: list[Evidence] = []
        steered: dict[int, Provenance] = {}  # id() of earlier calls -> DIRECTED or INJECTED
        directing = self.policy.data_flow.directed_sources
        for message in conversation.messages[:-1]:
            if message.role == "assistant":
                for call in message.calls:
                    by = _steered_by(call, evidence)
                    if by is not None and (directing or by is Provenance.INJECTED):
                        steered[id(call)] = by
                continue
            if message.trust is Trust.MODEL or not message.text:
                continue
            source = SourceText(message.text)
            if message.trust is Trust.TRUSTED:
                evidence.append(Evidence(message.index, message.role, source, Provenance.TRUSTED))
                continue
            rule = self.policy.tool(message.tool) if message.tool else None
            if rule is not None and rule.trust_results:
                evidence.append(
                    Evidence(
                        message.index,
                        message.role,
                        source,
                        Provenance.TRUSTED,
                        message.tool,
                        message.tool_call_id,
                    )
                )
                continue
            scanned = scans.get(message.index)
            by = steered.get(id(message.call)) if message.call is not None else None
            level = by or Provenance.UNTRUSTED
            regions = scanned.reach if scanned is not None else ()
            if level is Provenance.INJECTED:  # the injection chose what was fetched: all of it is its doing
                level, regions = Provenance.UNTRUSTED, (Span(0, len(message.text)),)
            evidence.append(
                Evidence(
                    message.index,
                    message.role,
                    source,
                    level,
                    message.tool,
                    message.tool_call_id,
                    scanned=scanned.scanned
                    if scanned is not None and scanned.scanned < len(message.text)
                    else None,
                    regions=regions,
                    cores=scanned.cores if scanned is not None else (),
                )
            )
        return evidence

    def _problems(self, conversation: Conversation) -> list[AgentFinding]:
        out = []
        for problem in conversation.problems:
            if problem.kind in ("orphan_tool_result", "unknown_role", "bad_message"):
                effect = self._fail
            else:
                effect = Effect.FLAG
            out.append(self._finding("malformed_conversation", effect, f"{problem.kind}: {problem.detail}"))
        return out

    def _injection_findings(
        self, conversation: Conversation, scans: dict[int, ScannedText]
    ) -> list[AgentFinding]:
        out = []
        effect = Effect.FLAG  # in block mode each call carries its own blocking finding
        for index, scanned in scans.items():
            message = conversation.messages[index]
            if scanned.scanned < len(message.text):
                out.append(
                    self._finding(
                        "oversize_tool_result",
                        Effect.FLAG,
                        f"{_where(message)} has {len(message.text)} characters; the first {scanned.scanned} were "
                        "scanned, the rest counts as untrusted (limits.max_tool_result_chars)",
                    )
                )
            if not scanned.injected:
                continue
            best = max(scanned.findings, key=lambda f: f.score, default=None)
            evidence = f": {best.evidence[:120]!r}" if best is not None and best.evidence else ""
            out.append(
                self._finding(
                    "injected_tool_result",
                    effect,
                    f"{_where(message)} carries a prompt injection in {len(scanned.regions)} passage(s){evidence}",
                    origin=Origin(
                        index,
                        message.role,
                        "injected",
                        message.tool,
                        message.tool_call_id,
                        scanned.regions[0],
                    ),
                )
            )
        return out

    # ---- findings ------------------------------------------------------------------------------------------

    def _finding(
        self,
        name: str,
        effect: Effect,
        message: str,
        *,
        argument: str | None = None,
        value: str | None = None,
        kind: str | None = None,
        origin: Origin | None = None,
    ) -> AgentFinding:
        rule = self.classifier.rule_ids.get(name)
        if rule is None:
            raise PolicyError(f"no rule named {name!r} in the agent tool catalogue")
        return AgentFinding(rule, name, effect, message, argument, value, kind, origin)

    def _value_finding(
        self, name: str, effect: Effect, value: Value, level: Provenance, seen: Sighting | None
    ) -> AgentFinding:
        shown = value.raw if len(value.raw) <= 120 else value.raw[:117] + "..."
        what = f"argument {value.argument!r} = {shown!r} ({value.kind.value})"
        origin = None
        where = ""
        if seen is not None:
            item = seen.evidence
            origin = Origin(item.index, item.role, level.value, item.tool, item.tool_call_id, seen.span)
            where = _evidence_where(item)
        if name == "injected_value":
            message = f"{what} occurs only inside the injected passage of {where}"
        elif level is Provenance.UNKNOWN:
            message = f"{what} appears nowhere in the conversation: the model made it up or decoded it"
        else:
            message = (
                f"{what} occurs only in untrusted content ({where}), "
                "not in anything the user or system said or pointed the agent at"
            )
        if name == "sensitive_egress":
            message = f"{what} is a payment card number the user did not give" + (
                f"; seen in {where}" if seen is not None else ""
            )
        return AgentFinding(
            self.classifier.rule_ids[name],
            name,
            effect,
            message,
            value.argument,
            shown,
            value.kind.value,
            origin,
        )


def _string_leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _string_leaves(item, f"{path}[{i}]")


def _specific(value: Value) -> bool:
    """Whether a value says enough to be the attacker's choice: not a number, a date or a word of three letters.

    Such small values (an id, a date, an amount) also occur in injected passages by chance; the values an
    injection needs (who receives, what is said, which password) are longer.
    """
    if value.kind is Kind.NUMBER:
        return False
    if value.kind is Kind.TEXT:
        return len(value.key) >= MIN_SPECIFIC_CHARS and not _DATE_LIKE.fullmatch(value.key)
    return True


def _steered_by(call: ToolCall, evidence: list[Evidence]) -> Provenance | None:
    """Who chose what this call fetches: the user (DIRECTED: one of its argument values is trusted or
    directed, as the file the user named), an injection (INJECTED: its specific values come only from
    injected passages, as a search for what the injection asked for), or nobody in particular (None)."""
    if call.arguments is None:
        return None
    injected = False
    for value in extract_values(call.arguments):
        if value.kind is Kind.NUMBER or (value.kind is Kind.TEXT and len(value.key) < MIN_DIRECTING_CHARS):
            continue
        level, _ = provenance(value, evidence)
        if level in (Provenance.TRUSTED, Provenance.DIRECTED):
            return Provenance.DIRECTED
        injected = injected or (level is Provenance.INJECTED and _specific(value))
    return Provenance.INJECTED if injected else None


def _decided(call: ToolCall, found: list[AgentFinding], klass: ToolClass, *, floor: Decision) -> CallDecision:
    action = strictest([floor, *(f.effect.decision for f in found)])
    return CallDecision(call.id, call.name, action, tuple(found), klass.side_effects, klass.effects)


def _where(message: ChatMessage) -> str:
    if message.tool:
        return f"messages[{message.index}] (result of {message.tool})"
    return f"messages[{message.index}] ({message.role})"


def _evidence_where(item: Evidence) -> str:
    if item.tool:
        return f"messages[{item.index}] (result of {item.tool})"
    return f"messages[{item.index}] ({item.role})"


def _identity_key(identity: Identity | str | None) -> str:
    if identity is None:
        return "anonymous"
    if isinstance(identity, str):
        return identity
    parts = [identity.tenant or "", identity.user or "", identity.api_key_id or ""]
    return "/".join(parts) if any(parts) else "anonymous"
