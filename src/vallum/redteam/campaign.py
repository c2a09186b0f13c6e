"""A campaign: every attack of the chosen suites, once plain and once per mutation chain, as concrete
conversations with a planted canary and secret. The same suites and seed always give the same campaign.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vallum.canary import add_canary
from vallum.redteam.catalogue import Attack, Suite, ToolSpec
from vallum.redteam.mutators import Probe, apply_chain, parse_chain

Role = Literal["user", "assistant", "tool_call", "tool_result"]
CarrierSource = Literal["user", "retrieval", "tool_result"]

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class Message:
    """One message of the conversation a case sends; tool calls and results carry the tool's name."""

    role: Role
    text: str
    name: str = ""
    call_id: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.name:
            out["name"] = self.name
        if self.role == "tool_call":
            out["arguments"] = self.arguments
        return out


@dataclass(frozen=True)
class Case:
    """One attack, mutated or not, ready to send: `rounds` are the messages added before each answer."""

    id: str
    suite: str
    attack: Attack
    chain: tuple[str, ...]
    system: str
    canary: str
    secret: str
    rounds: tuple[tuple[Message, ...], ...]
    tools: tuple[ToolSpec, ...]
    carrier: str  # the text that carries the payload, as sent
    carrier_source: CarrierSource
    source: str = ""  # the suite file it came from

    @property
    def sent_texts(self) -> list[str]:
        """Everything the attacker put in the conversation, for telling echoes from answers."""
        return [m.text for round_ in self.rounds for m in round_ if m.role in ("user", "tool_result")]


@dataclass(frozen=True)
class Campaign:
    seed: int
    cases: tuple[Case, ...]
    suites: tuple[Suite, ...]

    def fingerprint(self) -> str:
        """Changes whenever anything sent would change: suites, mutations, seed or budget."""
        digest = hashlib.sha256(str(self.seed).encode())
        for case in self.cases:
            rounds = [[m.to_dict() for m in round_] for round_ in case.rounds]
            digest.update(json.dumps([case.id, case.system, rounds], sort_keys=True).encode())
        return digest.hexdigest()[:16]


def _digest(seed: int, case_id: str, purpose: str) -> bytes:
    return hashlib.sha256(f"{seed}:{case_id}:{purpose}".encode()).digest()


def planted_canary(seed: int, case_id: str) -> str:
    """A pronounceable canary (20 letters, ~61 bits) fixed by the seed and the case."""
    data = _digest(seed, case_id, "canary")
    return "".join(_CONSONANTS[data[2 * i] % 14] + _VOWELS[data[2 * i + 1] % 5] for i in range(10))


def planted_secret(seed: int, case_id: str) -> str:
    """A fake AWS access key id, fixed by the seed and the case: what a leaked credential looks like."""
    data = _digest(seed, case_id, "secret")
    return "AKIA" + "".join(_BASE32[byte % 32] for byte in data[:16])


def _render(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def build_case(suite: Suite, attack: Attack, chain: tuple[str, ...], seed: int) -> Case:
    case_id = attack.id if not chain else f"{attack.id}~{'+'.join(chain)}"
    rng = random.Random(f"{seed}:{case_id}")
    probe = apply_chain(chain, Probe(attack.payload, attack.turns), rng)
    canary, secret = planted_canary(seed, case_id), planted_secret(seed, case_id)
    system, _ = add_canary(_render(attack.system or suite.system, secret=secret), canary)
    document = _render(attack.document, payload=probe.payload) if attack.document is not None else ""
    prompt = _render(attack.prompt, payload=probe.payload, document=document)
    final: list[Message] = [Message("user", prompt)]
    carrier = prompt
    source: CarrierSource = "user"
    if attack.document is not None and "{payload}" in attack.document:
        carrier, source = document, "retrieval"
    if attack.tool_result is not None:
        result = attack.tool_result
        content = _render(result.content, payload=probe.payload)
        call_id = f"call_{hashlib.sha256(case_id.encode()).hexdigest()[:12]}"
        final += [
            Message("tool_call", "", name=result.name, call_id=call_id, arguments=dict(result.arguments)),
            Message("tool_result", content, name=result.name, call_id=call_id),
        ]
        if "{payload}" in result.content:
            carrier, source = content, "tool_result"
    rounds = (*((Message("user", turn),) for turn in probe.lead_turns), tuple(final))
    return Case(
        id=case_id,
        suite=suite.suite,
        attack=attack,
        chain=chain,
        system=system,
        canary=canary,
        secret=secret,
        rounds=rounds,
        tools=tuple(suite.tool(name) for name in attack.tools),
        carrier=carrier,
        carrier_source=source,
        source=suite.source,
    )


def build_campaign(
    suites: Sequence[Suite],
    *,
    seed: int = 0,
    extra_chains: Iterable[str | Sequence[str]] = (),
    plain_only: bool = False,
    budget: int | None = None,
) -> Campaign:
    """Every attack plain, then once per mutation chain (its suite's and `extra_chains`), capped by budget.

    `plain_only` drops the suites' own chains; `extra_chains` still apply.

    Under a budget the cases kept are spread over the suites (round robin), plain attacks before their
    mutated variants, in an order shuffled by the seed; they are sent in catalogue order.
    """
    extras = [parse_chain(chain) for chain in extra_chains]
    per_suite: list[list[Case]] = []
    for suite in suites:
        chains = ([] if plain_only else [parse_chain(chain) for chain in suite.mutations]) + extras
        cases = []
        for attack in suite.attacks:
            cases.append(build_case(suite, attack, (), seed))
            if attack.mutate:
                cases += [build_case(suite, attack, chain, seed) for chain in dict.fromkeys(chains)]
        per_suite.append(cases)
    ordered = [case for cases in per_suite for case in cases]
    if budget is not None and budget < len(ordered):
        keep = set(_spread(per_suite, seed)[: max(0, budget)])
        ordered = [case for case in ordered if case.id in keep]
    return Campaign(seed, tuple(ordered), tuple(suites))


def _spread(per_suite: list[list[Case]], seed: int) -> list[str]:
    queues = []
    for cases in per_suite:
        rng = random.Random(f"{seed}:budget:{cases[0].suite if cases else ''}")
        plain = [c.id for c in cases if not c.chain]
        mutated = [c.id for c in cases if c.chain]
        rng.shuffle(plain)
        rng.shuffle(mutated)
        queues.append(plain + mutated)
    order: list[str] = []
    for index in range(max((len(q) for q in queues), default=0)):
        order += [q[index] for q in queues if index < len(q)]
    return order
