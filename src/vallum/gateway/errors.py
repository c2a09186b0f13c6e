"""Errors the gateway answers with, shaped as the client's API expects, with stable codes.

Clients branch on `code` (OpenAI) or `error.type` plus our `vallum.code` (Anthropic); the messages are for
people. A block carries the ids of the findings that caused it, never the offending text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from vallum.core.types import Verdict

Api = Literal["openai", "anthropic"]

# HTTP status -> (OpenAI error type, Anthropic error type)
_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_error"),
    502: ("api_error", "api_error"),
    503: ("api_error", "overloaded_error"),
    504: ("api_error", "api_error"),
}


@dataclass(slots=True)
class GatewayError(Exception):
    status: int
    code: str
    message: str
    detail: dict[str, object] = field(default_factory=dict)
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self, api: Api) -> dict[str, object]:
        openai_type, anthropic_type = _TYPES.get(self.status, ("api_error", "api_error"))
        vallum = {"code": self.code, **self.detail}
        if api == "anthropic":
            error = {"type": anthropic_type, "message": self.message, "vallum": vallum}
            return {"type": "error", "error": error}
        return {
            "error": {
                "message": self.message,
                "type": openai_type,
                "param": self.detail.get("param"),
                "code": self.code,
                "vallum": vallum,
            }
        }

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(max(1, round(self.retry_after)))} if self.retry_after is not None else {}


def blocked(stage: Literal["input", "output"], verdicts: Iterable[Verdict]) -> GatewayError:
    """The error for a request (input) or answer (output) that policy blocks."""
    found: list[dict[str, object]] = []
    categories: dict[str, None] = {}
    policy = ""
    for verdict in verdicts:
        policy = verdict.policy_version
        categories.update(dict.fromkeys(verdict.categories))
        found.extend(
            {"id": f.rule_id or f.detector, "category": f.category, "subtype": f.subtype}
            for f in verdict.findings
            if f.category in verdict.categories
        )
    names = ", ".join(categories) or "policy"
    if stage == "input":
        return GatewayError(
            400,
            "input_blocked",
            f"The request was blocked by policy ({names}).",
            {"categories": list(categories), "findings": found, "policy_version": policy},
        )
    # 400 like a blocked request, not 403: red-team tools and SDK users read 403 as a bad API key and stop.
    return GatewayError(
        400,
        "output_blocked",
        f"The model's answer was blocked by policy ({names}).",
        {"categories": list(categories), "findings": found, "policy_version": policy},
    )
