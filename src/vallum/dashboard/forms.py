"""Reading the dashboard's HTML forms (application/x-www-form-urlencoded) and its query parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES = 512 * 1024  # a pasted text plus a draft policy, with room to spare
_MAX_FIELDS = 32


class FormError(ValueError):
    """A form or query value the page cannot use; the message says which and why, for the page to show."""


async def read_form(request: Request) -> dict[str, str]:
    """The posted fields (the last value of a repeated one); raises FormError for other bodies."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("the form must be sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"the form could not be read: {exc}") from None
    return dict(pairs)


def text_or_none(value: str | None) -> str | None:
    """A filter field: blank means "any"."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def utc_time(value: str | None, name: str) -> float | None:
    """A `datetime-local` field (read as UTC) or ISO time, as epoch seconds; blank is None."""
    value = text_or_none(value)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FormError(f"{name} must be a date and time such as 2025-01-31T13:05") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def whole_number(value: str | None, name: str, default: int, low: int, high: int) -> int:
    value = text_or_none(value)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise FormError(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise FormError(f"{name} must be between {low} and {high}")
    return number
