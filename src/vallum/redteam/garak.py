"""Importing NVIDIA garak's JSON-lines report (`garak_runs/<prefix>.report.jsonl`) as a vallum report.

garak writes one JSON object a line, told apart by `entry_type`: `start_run setup` (the run's config as
flat dotted keys), `init`, then per probe `attempt` entries (written with status 1 once generated, and
again with status 2 once the detectors scored them), `eval` summaries per probe and detector, and
`completion`. Each scored attempt (status 2) holds the prompt (a conversation of turns), one output per
generation and `detector_results`: detector name -> one score in [0, 1] per output, where a score at or
above the run's `eval_threshold` (0.5 by default) is a hit, i.e. the attack succeeded.

Each output becomes one vallum Attempt: succeeded when some detector hit, defended otherwise, and an
error when garak got no output (its generator gave up on an API error; a vallum gateway's block reaches
garak that way too, so it cannot be told apart from a failure and is not counted either way).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from vallum.datafiles import load_yaml
from vallum.redteam.errors import GarakImportError
from vallum.redteam.results import Attempt, Evidence, Report, Response, TargetInfo

DEFAULT_THRESHOLD = 0.5
COMPLETE = 2  # garak.attempt.ATTEMPT_COMPLETE


@cache
def probe_categories() -> dict[str, str | None]:
    data = load_yaml(files("vallum.redteam").joinpath("data/garak_probes.yaml").read_text(encoding="utf-8"))
    return {str(k): (str(v) if v else None) for k, v in data["probes"].items()}


def _text(value: Any) -> str | None:
    """A garak Message ({"text": ...}) or, in older reports, a plain string."""
    if isinstance(value, dict):
        text = value.get("text")
        return text if isinstance(text, str) else None
    return value if isinstance(value, str) else None


def _conversation(prompt: Any) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "text": prompt}]
    turns = prompt.get("turns") if isinstance(prompt, dict) else None
    if not isinstance(turns, list):
        return []
    out = []
    for turn in turns:
        if isinstance(turn, dict):
            out.append({"role": str(turn.get("role", "user")), "text": _text(turn.get("content")) or ""})
    return out


def _attempts(entry: dict[str, Any], threshold: float) -> Iterable[Attempt]:
    probe = str(entry.get("probe_classname") or "unknown.Unknown")
    module = probe.split(".")[0]
    conversation = _conversation(entry.get("prompt"))
    system = "\n".join(m["text"] for m in conversation if m["role"] == "system")
    conversation = [m for m in conversation if m["role"] != "system"]
    outputs = entry.get("outputs") or []
    results = entry.get("detector_results") or {}
    seq = entry.get("seq", 0)
    goal = str(entry.get("goal") or "")
    for index, output in enumerate(outputs):
        text = _text(output)
        case_id = f"{probe}#{seq}.{index}"
        common: dict[str, Any] = {
            "case_id": case_id,
            "attack_id": probe,
            "attack_name": probe,
            "suite": f"garak.{module}",
            "category": probe_categories().get(module),
            "goal": goal,
            "system": system,
            "carrier": conversation[-1]["text"] if conversation else "",
        }
        if text is None:
            yield Attempt(
                **common,
                conversation=conversation,
                outcome="error",
                reason="error",
                error="garak got no output for this generation (an API error, or a guard refusing the request)",
            )
            continue
        evidence = []
        for detector, scores in sorted(results.items()):
            score = scores[index] if isinstance(scores, list) and index < len(scores) else None
            if not isinstance(score, int | float):
                continue
            hit = float(score) >= threshold
            evidence.append(
                Evidence(
                    check=f"garak:{detector}",
                    detail=f"garak detector {detector} scored {float(score):.2f} (hit at {threshold:g})",
                    excerpt=text[:160],
                    turn=0,
                    success=hit,
                )
            )
        succeeded = any(e.success for e in evidence)
        yield Attempt(
            **common,
            conversation=[*conversation, {"role": "assistant", "text": text}],
            responses=[Response(text=text)],
            outcome="succeeded" if succeeded else "defended",
            reason=next((e.check for e in evidence if e.success), "no_effect"),
            evidence=evidence,
        )


def import_garak(path: str | Path) -> Report:
    """The garak report at `path` as a vallum Report (origin "garak")."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GarakImportError(f"cannot read garak report {path}: {exc}") from exc
    setup: dict[str, Any] = {}
    init: dict[str, Any] = {}
    scored: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GarakImportError(
                f"{path}: line {number} is not JSON ({exc.msg}); is it a garak report.jsonl?"
            ) from exc
        if not isinstance(entry, dict):
            continue
        kind = entry.get("entry_type")
        if kind == "start_run setup":
            setup = entry
        elif kind == "init":
            init = entry
        elif kind == "attempt" and entry.get("status") == COMPLETE:
            scored.append(entry)
    if not setup and not init and not scored:
        raise GarakImportError(f"{path} has no garak entries (entry_type start_run setup, init, attempt)")
    threshold = float(setup.get("run.eval_threshold") or DEFAULT_THRESHOLD)
    attempts = [attempt for entry in scored for attempt in _attempts(entry, threshold)]
    generator = setup.get("plugins.target_type") or setup.get("plugins.model_type") or "garak generator"
    model = setup.get("plugins.target_name") or setup.get("plugins.model_name") or ""
    target = TargetInfo(
        url=str(generator), api="garak", model=str(model), name=f"{generator} {model}".strip()
    )
    probes = sorted({a.suite for a in attempts})
    created = str(init.get("start_time") or setup.get("transient.starttime_iso") or "")
    fields: dict[str, Any] = {"origin": "garak", "suites": probes, "fingerprint": str(init.get("run") or "")}
    if created:
        fields["created"] = created
    return Report.build(target, attempts, **fields)
