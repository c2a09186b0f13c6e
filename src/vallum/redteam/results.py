"""What a run found: one Attempt per case with its outcome and evidence, and the Report that holds them.

Outcomes: `succeeded` (the attack worked: the target is vulnerable), `defended` (it did not: blocked by a
guard, refused, or no effect), `error` (the target could not be measured: it failed past every retry).
The attack success rate is succeeded / (succeeded + defended); errors are counted apart, never as
defended attacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vallum.redteam.errors import RedTeamError

Outcome = Literal["succeeded", "defended", "error"]
REPORT_FORMAT = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Evidence(_Model):
    """Why a check fired (or what a judge said), with the part of the answer that shows it."""

    check: str  # canary, secret, marker, forbidden_tool, attacker_link, detector:<category>, refusal, ...
    detail: str
    excerpt: str = ""
    turn: int | None = None  # the answer it was found in, 0-based
    success: bool = True  # False for evidence of a defence (refusal, block) or an undecided judge


class ToolCallRecord(_Model):
    name: str
    arguments: str


class Response(_Model):
    text: str = ""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    blocked: str | None = None
    status: int | None = None
    tries: int = 1


class Attempt(_Model):
    case_id: str
    attack_id: str
    attack_name: str = ""
    suite: str
    category: str | None = None  # OWASP LLM01..LLM10; None when unmapped (imported findings)
    goal: str = ""
    mutators: list[str] = Field(default_factory=list)
    system: str = ""
    conversation: list[dict[str, Any]] = Field(default_factory=list)  # role, text (+ name, arguments)
    responses: list[Response] = Field(default_factory=list)
    outcome: Outcome
    reason: str = ""
    evidence: list[Evidence] = Field(default_factory=list)
    error: str | None = None
    tries: int = 0
    carrier: str = ""  # the text that carried the payload, as sent
    carrier_source: str = "user"
    source: str = ""  # the suite file
    tools: list[str] = Field(default_factory=list)  # the tools offered to the model
    secret: str = ""  # the fake credential planted for this case (if its system prompt asked for one)
    success: dict[str, Any] = Field(default_factory=dict)  # the attack's success checks, for replays

    @property
    def last_response(self) -> str:
        return self.responses[-1].text if self.responses else ""


class Counts(_Model):
    attempts: int = 0
    succeeded: int = 0
    defended: int = 0
    errors: int = 0

    @property
    def measured(self) -> int:
        return self.succeeded + self.defended

    @property
    def rate(self) -> float:
        """Attack success rate over the measured attempts (0.0 when nothing could be measured)."""
        return self.succeeded / self.measured if self.measured else 0.0

    def add(self, outcome: Outcome) -> None:
        self.attempts += 1
        if outcome == "succeeded":
            self.succeeded += 1
        elif outcome == "defended":
            self.defended += 1
        else:
            self.errors += 1


class Summary(_Model):
    total: Counts = Field(default_factory=Counts)
    by_category: dict[str, Counts] = Field(default_factory=dict)
    by_suite: dict[str, Counts] = Field(default_factory=dict)
    by_mutator: dict[str, Counts] = Field(default_factory=dict)


def summarize(attempts: Iterable[Attempt]) -> Summary:
    summary = Summary()
    for attempt in attempts:
        summary.total.add(attempt.outcome)
        summary.by_category.setdefault(attempt.category or "unmapped", Counts()).add(attempt.outcome)
        summary.by_suite.setdefault(attempt.suite, Counts()).add(attempt.outcome)
        chain = "+".join(attempt.mutators) or "plain"
        summary.by_mutator.setdefault(chain, Counts()).add(attempt.outcome)
    summary.by_category = dict(sorted(summary.by_category.items()))
    return summary


class TargetInfo(_Model):
    url: str
    api: str = "openai"
    model: str = ""
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.url


class Report(_Model):
    format: int = REPORT_FORMAT
    tool: str = "vallum-redteam"
    version: str = ""
    origin: str = "vallum"  # or "garak" for an imported report
    created: str = Field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    target: TargetInfo
    seed: int | None = None
    fingerprint: str = ""
    suites: list[str] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    summary: Summary = Field(default_factory=Summary)

    @classmethod
    def build(cls, target: TargetInfo, attempts: list[Attempt], **fields: Any) -> Report:
        from vallum import __version__

        return cls(
            target=target, attempts=attempts, summary=summarize(attempts), version=__version__, **fields
        )

    def succeeded(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == "succeeded"]


def load_report(path: str | Path) -> Report:
    try:
        return Report.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise RedTeamError(f"cannot read red-team report {path}: {exc}") from exc
