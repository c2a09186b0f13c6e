"""Read-only or side-effecting, and which effects: inferred from a tool's name, description and schema.

The words live in `rules/agent_tools.yaml` (see its header for the procedure); this module reads them,
classes tools, and tells whether the user's request asks for an effect at all. A tool the policy says
nothing about is classed from its own definition, so an application with no per-tool configuration is
still protected; the policy can override the class of any tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.detectors.rules import bundled_rule_path, ensure_unique, load_rule_file

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NAME_WORD = re.compile(r"[a-z0-9]+")
_REQUEST_WORD = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*")
_IRREGULAR = {
    "sent": "send",
    "paid": "pay",
    "bought": "buy",
    "sold": "sell",
    "wrote": "write",
    "written": "write",
    "made": "make",
    "got": "get",
    "found": "find",
    "ran": "run",
    "put": "put",
    "set": "set",
    "shut": "shut",
}
DESCRIPTION_WORDS = 8  # the description's verb must be among its first words


class EffectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z_]+$")
    description: str
    verbs: tuple[str, ...] = ()
    lead_verbs: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    request: tuple[str, ...] = ()


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^VAL-AGT-\d{4}$")
    name: str = Field(pattern=r"^[a-z_]+$")
    description: str


class ToolCatalogue(BaseModel):
    """The schema of rules/agent_tools.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    read_verbs: tuple[str, ...]
    carrier_verbs: tuple[str, ...] = ()
    effects: tuple[EffectSpec, ...]
    destination_arguments: tuple[str, ...] = ()
    side_effect_arguments: dict[str, str] = Field(default_factory=dict)
    delegation: tuple[str, ...] = ()
    rules: tuple[RuleSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> ToolCatalogue:
        ensure_unique((e.name for e in self.effects), "effect name")
        ensure_unique((r.id for r in self.rules), "rule id")
        ensure_unique((r.name for r in self.rules), "rule name")
        names = {e.name for e in self.effects}
        unknown = sorted(set(self.side_effect_arguments.values()) - names)
        if unknown:
            raise ValueError(f"side_effect_arguments name unknown effects: {', '.join(unknown)}")
        return self


@dataclass(frozen=True, slots=True)
class ToolClass:
    side_effects: bool
    effects: tuple[str, ...]
    reason: str


class _WordMatcher:
    """Request words: `word`, `word*` (prefix), and phrases of those where a lone `*` is any one word."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        self.phrases: list[tuple[str, ...]] = []
        for entry in entries:
            words = tuple(entry.lower().split())
            if len(words) > 1:
                self.phrases.append(words)
            elif words and words[0].endswith("*"):
                self.prefixes.append(words[0][:-1])
            elif words:
                self.exact.add(words[0])
        self._prefix_tuple = tuple(self.prefixes)

    def matches(self, tokens: tuple[str, ...], vocabulary: frozenset[str]) -> bool:
        if not self.exact.isdisjoint(vocabulary):
            return True
        if self._prefix_tuple and any(t.startswith(self._prefix_tuple) for t in vocabulary):
            return True
        return any(_phrase_at(tokens, phrase) for phrase in self.phrases)


def _word_matches(token: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return token.startswith(pattern[:-1])
    return token == pattern


def _phrase_at(tokens: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    first = phrase[0]
    for i in range(len(tokens) - n + 1):
        if _word_matches(tokens[i], first) and all(
            _word_matches(tokens[i + k], phrase[k]) for k in range(1, n)
        ):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Request:
    """The user's request, tokenised once for every call it is compared with."""

    tokens: tuple[str, ...]
    vocabulary: frozenset[str]


class ToolClassifier:
    def __init__(self, catalogue: ToolCatalogue) -> None:
        self.catalogue = catalogue
        self.read_verbs = frozenset(catalogue.read_verbs)
        self.carrier_verbs = frozenset(catalogue.carrier_verbs)
        self._verbs: dict[str, list[str]] = {}
        self._lead: dict[str, list[str]] = {}
        self._objects: dict[str, list[str]] = {}
        for effect in catalogue.effects:
            for word in effect.verbs:
                self._verbs.setdefault(word, []).append(effect.name)
            for word in effect.lead_verbs:
                self._lead.setdefault(word, []).append(effect.name)
            for word in effect.objects:
                self._objects.setdefault(word, []).append(effect.name)
        self._vocabulary = (
            frozenset(self._verbs) | frozenset(self._lead) | frozenset(self._objects) | self.read_verbs
        )
        self._requests = {e.name: _WordMatcher(e.request) for e in catalogue.effects}
        self._delegation = _WordMatcher(catalogue.delegation)
        self.destination_arguments = frozenset(a.lower() for a in catalogue.destination_arguments)
        self.rule_ids = {r.name: r.id for r in catalogue.rules}
        self.classify = lru_cache(maxsize=4096)(self._classify)

    @classmethod
    def from_file(cls, path: str | Path) -> ToolClassifier:
        return cls(load_rule_file(Path(path), ToolCatalogue))

    # ---- classes -------------------------------------------------------------------------------------------

    def _classify(self, name: str, description: str = "", parameters: tuple[str, ...] = ()) -> ToolClass:
        found = self._from_words(name_words(name), lead_only=False)
        if found is not None:
            return ToolClass(found[0], found[1], f"name {name!r}")
        words = _REQUEST_WORD.findall(description.lower())[:DESCRIPTION_WORDS]
        found = self._from_words(words, lead_only=True)
        if found is not None:
            return ToolClass(found[0], found[1], "description")
        hinted = sorted(
            {
                self.catalogue.side_effect_arguments[p.lower()]
                for p in parameters
                if p.lower() in self.catalogue.side_effect_arguments
            }
        )
        if hinted:
            return ToolClass(True, tuple(hinted), "argument names")
        return ToolClass(True, (), "nothing in its name, description or arguments says it only reads")

    def _from_words(self, words: list[str], *, lead_only: bool) -> tuple[bool, tuple[str, ...]] | None:
        stems = [self._stem(w) for w in words]
        lead = next((s for s in stems if s in self.read_verbs or s in self._verbs or s in self._lead), None)
        if lead is None:
            if lead_only:
                return None
            effects = _unique(e for s in stems for e in self._objects.get(s, ()))
            return (True, effects) if effects else None
        later = stems[stems.index(lead) + 1 :]
        if lead in self.read_verbs and not (lead in self._verbs or lead in self._lead):
            side_later = [s for s in later if s in self._verbs] if not lead_only else []
            if not side_later:
                return False, ()
            verbs = side_later
        else:
            verbs = [lead] + ([s for s in later if s in self._verbs] if not lead_only else [])
        objects = _unique(e for s in stems for e in self._objects.get(s, ()))
        verb_effects = _unique(e for v in verbs for e in (self._verbs.get(v, []) + self._lead.get(v, [])))
        if objects and all(v in self.carrier_verbs for v in verbs):
            return True, objects
        return True, verb_effects or objects

    def _stem(self, word: str) -> str:
        if word in self._vocabulary:
            return word
        if word in _IRREGULAR:
            return _IRREGULAR[word]
        candidates = []
        if word.endswith("ies"):
            candidates.append(word[:-3] + "y")
        if word.endswith("es"):
            candidates.append(word[:-2])
        if word.endswith("s"):
            candidates.append(word[:-1])
        if word.endswith("ed"):
            candidates += [word[:-2], word[:-1], word[:-3]]
        if word.endswith("ing"):
            candidates += [word[:-3], word[:-3] + "e", word[:-4]]
        return next((c for c in candidates if c in self._vocabulary), word)

    # ---- the user's request --------------------------------------------------------------------------------

    def supported(self, effects: tuple[str, ...], request: Request) -> bool:
        """Whether the request asks for any of `effects` (a tool with no known effect cannot be judged: yes)."""
        if not effects:
            return True
        return any(
            effect not in self._requests or self._requests[effect].matches(request.tokens, request.vocabulary)
            for effect in effects
        )

    def delegates(self, request: Request) -> bool:
        """Whether the request hands the agent's authority to a document ("follow the instructions in ...")."""
        return self._delegation.matches(request.tokens, request.vocabulary)

    def is_destination(self, argument: str) -> bool:
        """Whether an argument path ("recipients[0]", "to.email") names who or where an effect lands."""
        parts = re.split(r"[.\[\]]+", argument.lower())
        return any(p in self.destination_arguments for p in parts if p and not p.isdigit())


def name_words(name: str) -> list[str]:
    return _NAME_WORD.findall(_CAMEL.sub(" ", name).lower())


@lru_cache(maxsize=1024)
def parse_request(text: str) -> Request:
    tokens = tuple(_REQUEST_WORD.findall(text.lower().replace("’", "'")))
    return Request(tokens, frozenset(tokens))


def parameter_names(parameters: Mapping[str, Any]) -> tuple[str, ...]:
    properties = parameters.get("properties")
    return tuple(sorted(str(k) for k in properties)) if isinstance(properties, dict) else ()


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@cache
def default_classifier() -> ToolClassifier:
    return ToolClassifier.from_file(bundled_rule_path("agent_tools"))
