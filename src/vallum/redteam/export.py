"""Feeding successful attacks back into the defences.

- Labelled JSON lines for `vallum eval` and for retraining: `{"text", "label": 1, "category":
  "injection", "source"}` per successful attack, where text is what carried the payload (the user's
  message, or the document or tool result it was hidden in) and source says which.
- Regression cases: a suite file of the successful attacks exactly as sent (mutations already applied,
  canaries planted afresh on replay), which `vallum redteam --suite-file` and the project's tests replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from vallum.redteam.results import Attempt

_EVAL_SOURCE = {"user": "user", "retrieval": "retrieval", "tool_result": "tool_result"}


def labelled_rows(attempts: Iterable[Attempt]) -> list[dict[str, Any]]:
    rows = []
    for attempt in attempts:
        if attempt.outcome != "succeeded" or not attempt.carrier:
            continue
        rows.append(
            {
                "text": attempt.carrier,
                "label": 1,
                "category": "injection",
                "source": _EVAL_SOURCE.get(attempt.carrier_source, "user"),
                "attack_id": attempt.attack_id,
                "case_id": attempt.case_id,
                "owasp": attempt.category,
                "mutators": attempt.mutators,
            }
        )
    return rows


def labelled_jsonl(attempts: Iterable[Attempt]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in labelled_rows(attempts))


def _regression_attack(attempt: Attempt) -> dict[str, Any] | None:
    """The attempt as a literal attack: its user turns, and its final round's tool result if any."""
    conversation = attempt.conversation
    users = [m for m in conversation if m.get("role") == "user"]
    if not users or not attempt.success:
        return None
    last_user = max(i for i, m in enumerate(conversation) if m.get("role") == "user")
    attack: dict[str, Any] = {
        "id": attempt.case_id.replace("~", "."),
        "name": f"{attempt.attack_name or attempt.attack_id} (regression)",
        "category": attempt.category or "LLM01",
        "goal": attempt.goal or "replay of a successful attack",
        "turns": [m.get("text", "") for m in users[:-1]],
        "payload": users[-1].get("text", ""),
        "mutate": False,
        "tags": ["regression", attempt.attack_id, *attempt.mutators],
        "success": attempt.success,
    }
    call = next((m for m in conversation[last_user:] if m.get("role") == "tool_call"), None)
    result = next((m for m in conversation[last_user:] if m.get("role") == "tool_result"), None)
    if call is not None and result is not None:
        attack["prompt"] = attack.pop("payload")
        attack["payload"] = result.get("text", "")
        attack["tool_result"] = {
            "name": call.get("name", "tool"),
            "arguments": call.get("arguments", {}),
            "content": "{payload}",
        }
    return attack


def regression_suites(attempts: Iterable[Attempt], tools: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One suite (as data) holding every successful attempt; `tools` maps suite name to its tool specs."""
    attacks: list[dict[str, Any]] = []
    offered: dict[str, dict[str, Any]] = {}
    systems: set[str] = set()
    for attempt in attempts:
        if attempt.outcome != "succeeded":
            continue
        attack = _regression_attack(attempt)
        if attack is None:
            continue
        suite_tools = [t for t in tools.get(attempt.suite, []) if t["name"] in attempt.tools]
        attack["tools"] = [t["name"] for t in suite_tools]
        system = _without_canary(attempt.system)
        attack["system"] = system.replace(attempt.secret, "{secret}") if attempt.secret else system
        for spec in suite_tools:
            offered.setdefault(spec["name"], spec)
        systems.add(attempt.suite)
        attacks.append(attack)
    return {
        "suite": "regression",
        "description": "Successful attacks from a red-team run, replayed as sent (suites: "
        + ", ".join(sorted(systems))
        + ").",
        "tools": list(offered.values()),
        "attacks": attacks,
    }


def regression_yaml(attempts: Iterable[Attempt], tools: dict[str, list[dict[str, Any]]]) -> str:
    suite = regression_suites(attempts, tools)
    if not suite["attacks"]:
        return ""
    return yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=110)


def _without_canary(system: str) -> str:
    """The system prompt as the suite wrote it: the planted canary line is added again on replay."""
    head, sep, _ = system.rpartition("\n\nInternal reference: ")
    return head if sep else system
