"""Argument constraints from the agent policy: a JSON Schema, RE2 patterns and allow-lists per argument.

Patterns and allow-lists name a top-level argument and apply to every string or number inside it (each
recipient of a list). Allow-list entries match by what the value is:

- the exact value (case-insensitive; account numbers and IBANs without spaces);
- a domain (`example.com`, `@example.com`) for e-mail addresses and URLs on it or on a sub-domain;
- a path prefix ending in `/` for file paths, after `..` is resolved (so `/srv/data/../../etc` is not under
  `/srv/data/`);
- a glob with `*` or `?` for anything else.

A value an allow-list admits counts as vouched for: the data-flow rules treat it as the user's own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2
from jsonschema import validators

from vallum.agents.policy import ArgumentRules, glob_to_re2
from vallum.agents.provenance import compact, url_key

MAX_SCHEMA_ERRORS = 5


@dataclass(frozen=True, slots=True)
class Violation:
    name: str  # schema_violation | pattern_mismatch | not_allow_listed
    argument: str | None
    value: str | None
    message: str


class Constraints:
    """Compiled argument rules of one tool."""

    def __init__(self, rules: ArgumentRules) -> None:
        self.rules = rules
        self._validator: Any = None
        if rules.json_schema is not None:
            cls = validators.validator_for(rules.json_schema)
            self._validator = cls(rules.json_schema)
        self._patterns = {name: re2.compile(pattern) for name, pattern in rules.patterns.items()}
        self._allow = {name: _AllowList(entries) for name, entries in rules.allow.items()}

    def check(self, arguments: Mapping[str, Any]) -> tuple[list[Violation], set[str]]:
        """Violations of the rules, and the argument paths whose values an allow-list vouches for."""
        violations: list[Violation] = []
        vouched: set[str] = set()
        if self._validator is not None:
            errors = sorted(self._validator.iter_errors(dict(arguments)), key=lambda e: list(e.absolute_path))
            for error in errors[:MAX_SCHEMA_ERRORS]:
                where = ".".join(str(p) for p in error.absolute_path) or None
                violations.append(
                    Violation("schema_violation", where, None, f"arguments break the schema: {error.message}")
                )
        for name, pattern in self._patterns.items():
            for path, text in _leaves(arguments.get(name), name):
                if pattern.fullmatch(text) is None:
                    message = f"argument {path!r} = {text[:80]!r} does not match the pattern {self.rules.patterns[name]!r}"
                    violations.append(Violation("pattern_mismatch", path, text, message))
        for name, allow in self._allow.items():
            if name not in arguments:
                continue
            for path, text in _leaves(arguments.get(name), name):
                if allow.admits(text):
                    vouched.add(path)
                else:
                    message = f"argument {path!r} = {text[:80]!r} is not in the allow-list for {name!r}"
                    violations.append(Violation("not_allow_listed", path, text, message))
        return violations, vouched


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int | float):
        yield path, str(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")


class _AllowList:
    def __init__(self, entries: tuple[str, ...]) -> None:
        self.exact = {e.strip().lower() for e in entries}
        self.compact = {compact(e) for e in entries if len(compact(e)) >= 8}
        self.domains = {
            e.strip().lower().lstrip("@.").removeprefix("*.")
            for e in entries
            if "/" not in e and "@" not in e.lstrip("@")
        }
        self.prefixes = tuple(posixpath.normpath(e) + "/" for e in entries if e.endswith("/"))
        self.globs = [re2.compile("(?i)" + glob_to_re2(e)) for e in entries if "*" in e or "?" in e]

    def admits(self, value: str) -> bool:
        text = value.strip()
        lowered = text.lower()
        if lowered in self.exact or (len(compact(text)) >= 8 and compact(text) in self.compact):
            return True
        host = _host(lowered)
        if host is not None and any(host == d or host.endswith("." + d) for d in self.domains):
            return True
        if text.startswith(("/", "~/")) and self.prefixes:
            normal = posixpath.normpath(text)
            if any((normal + "/").startswith(prefix) for prefix in self.prefixes):
                return True
        return any(glob.fullmatch(text) is not None for glob in self.globs)


def _host(lowered: str) -> str | None:
    if "@" in lowered and " " not in lowered:
        return lowered.rsplit("@", 1)[1]
    if "." in lowered and " " not in lowered and not lowered.startswith(("/", "~")):
        return url_key(lowered).split("/", 1)[0].split(":", 1)[0]
    return None
