"""Redaction strategies: rewrite the spans of findings as masks, keyed hashes, placeholders or fake values.

    redact(text, findings, strategy="placeholder", vault=None) -> RedactionResult

`strategy` is one strategy or a mapping from finding subtype (`CREDIT_CARD`) or category (`pii`) to one,
so the Guard can pass the per-category strategies of its policy. Overlapping spans are resolved first:
the longest wins, then the most confident. With a vault, placeholders are numbered across the whole
request and every reversible replacement (placeholder, synthetic, hash) is recorded for `vault.restore`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from stdnum import iban as iban_rules
from stdnum import luhn

from vallum.core.types import Finding, Span
from vallum.errors import VallumError
from vallum.spans import non_overlapping
from vallum.vault import Vault

HASH_CHARS = 12
MASK_CHAR = "*"
# A per-process key: hashes link repeats of a value within a deployment's process, not across them.
_PROCESS_KEY = os.urandom(32)


class Strategy(StrEnum):
    MASK = "mask"
    HASH = "hash"
    PLACEHOLDER = "placeholder"
    SYNTHETIC = "synthetic"


StrategyChoice = Strategy | str | Mapping[str, Strategy | str]


class RedactionError(VallumError):
    """An unknown strategy name or an unusable hash key."""


@dataclass(frozen=True, slots=True)
class Replacement:
    """What was put where; the original value is deliberately absent (results get logged)."""

    span: Span
    label: str
    strategy: Strategy
    replacement: str


@dataclass(frozen=True, slots=True)
class RedactionResult:
    text: str
    replacements: tuple[Replacement, ...]


@dataclass(frozen=True, slots=True)
class RedactionOptions:
    # Digits of a card number a mask leaves visible at the end ("**** **** **** 1111"); 0 hides all.
    keep_last_card_digits: int = 4
    hash_key: bytes = _PROCESS_KEY


def redact(
    text: str,
    findings: Iterable[Finding],
    strategy: StrategyChoice = Strategy.PLACEHOLDER,
    vault: Vault | None = None,
    options: RedactionOptions | None = None,
) -> RedactionResult:
    options = options or RedactionOptions()
    if len(options.hash_key) < 16:
        raise RedactionError("hash_key must be at least 16 bytes; use os.urandom(32) and keep it secret")
    choose = _chooser(strategy)
    spanned = [
        f for f in findings if f.span is not None and f.span.end > f.span.start and f.span.end <= len(text)
    ]
    chosen = non_overlapping(spanned, lambda f: (_span(f).start, _span(f).end), lambda f: f.score)
    local = vault if vault is not None else Vault()  # numbering and synthetic seeds for this call alone
    pieces: list[str] = []
    replacements: list[Replacement] = []
    cursor = 0
    for finding in chosen:
        span = _span(finding)
        label = (finding.subtype or finding.category).upper()
        how = choose(finding)
        value = text[span.start : span.end]
        new = _replace(how, label, value, local, options)
        pieces.append(text[cursor : span.start])
        pieces.append(new)
        replacements.append(Replacement(span, label, how, new))
        cursor = span.end
    pieces.append(text[cursor:])
    return RedactionResult("".join(pieces), tuple(replacements))


def _span(finding: Finding) -> Span:
    assert finding.span is not None  # filtered in redact()
    return finding.span


def _chooser(strategy: StrategyChoice) -> Callable[[Finding], Strategy]:
    if isinstance(strategy, Mapping):
        table = {key.upper(): _strategy(value) for key, value in strategy.items()}

        def by_finding(finding: Finding) -> Strategy:
            subtype = (finding.subtype or "").upper()
            return table.get(subtype) or table.get(finding.category.upper()) or Strategy.PLACEHOLDER

        return by_finding
    single = _strategy(strategy)
    return lambda _finding: single


def _strategy(value: Strategy | str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        known = ", ".join(s.value for s in Strategy)
        raise RedactionError(f"unknown redaction strategy {value!r}; use one of: {known}") from None


def _replace(how: Strategy, label: str, value: str, vault: Vault, options: RedactionOptions) -> str:
    if how is Strategy.MASK:
        return mask(value, options.keep_last_card_digits if label == "CREDIT_CARD" else 0)
    if how is Strategy.PLACEHOLDER:
        return vault.placeholder(label, value)
    if how is Strategy.HASH:
        token = f"<{label}:{keyed_hash(value, options.hash_key)}>"
        vault.remember(token, value, f"hash:{label}")
        return token
    fake = synthetic(label, value, seed=vault.request_id)
    if fake is None or vault.lookup(fake) not in (None, value):
        return vault.placeholder(label, value)  # no generator, or the fake already stands for another value
    vault.remember(fake, value, f"synthetic:{label}")
    return fake


def mask(value: str, keep_last_digits: int = 0) -> str:
    """Letters and digits become `*`, layout stays; the last `keep_last_digits` digits stay visible."""
    digits_seen = 0
    total_digits = sum(c.isdigit() for c in value)
    out = []
    for c in value:
        if c.isdigit():
            digits_seen += 1
            out.append(c if digits_seen > total_digits - keep_last_digits else MASK_CHAR)
        else:
            out.append(MASK_CHAR if c.isalnum() else c)
    return "".join(out)


def keyed_hash(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:HASH_CHARS]


def synthetic(label: str, value: str, seed: str) -> str | None:
    """A fake, well-formed value of the same type, the same for the same value within one request.

    Fakes come from reserved or never-issued ranges (example.com, 555-01xx, TEST-NET, 9xx SSNs, a
    Visa test BIN) so they can never be someone's real data. None when no generator exists for the type.
    """
    generate = _GENERATORS.get(label)
    if generate is None:
        return None
    digest = hashlib.sha256(f"{seed}\x00{label}\x00{value}".encode()).digest()
    return generate(int.from_bytes(digest[:8], "big"), value)


def _email(n: int, _value: str) -> str:
    return f"user{n % 1_000_000:06d}@example.com"


def _phone(n: int, _value: str) -> str:
    return f"+1 202-555-01{n % 100:02d}"


def _card(n: int, value: str) -> str:
    body = f"400000{n % 10**9:09d}"
    digits = body + luhn.calc_check_digit(body)
    groups = [digits[i : i + 4] for i in range(0, 16, 4)]
    separator = next((c for c in value if c in " -"), "")
    return separator.join(groups)


def _iban(n: int, _value: str) -> str:
    bban = f"TEST{n % 10**14:014d}"
    return f"GB{iban_rules.calc_check_digits('GB00' + bban)}{bban}"


def _ip(n: int, value: str) -> str:
    if ":" in value:
        return f"2001:db8::{n % 0xFFFF:x}"
    return f"203.0.113.{n % 254 + 1}"


def _ssn(n: int, _value: str) -> str:
    return f"9{n % 100:02d}-{n // 100 % 90 + 10:02d}-{n // 10_000 % 9000 + 1000:04d}"


_NAMES = (
    "Alex Morgan",
    "Sam Taylor",
    "Jordan Lee",
    "Casey Brooks",
    "Robin Hayes",
    "Jamie Quinn",
    "Avery Stone",
)


def _person(n: int, _value: str) -> str:
    return _NAMES[n % len(_NAMES)]


def _address(n: int, _value: str) -> str:
    return f"{n % 9000 + 100} Example Street"


def _birth_date(n: int, _value: str) -> str:
    return f"01/01/{1950 + n % 50}"


_GENERATORS: dict[str, Callable[[int, str], str]] = {
    "EMAIL": _email,
    "PHONE_NUMBER": _phone,
    "CREDIT_CARD": _card,
    "IBAN": _iban,
    "IP_ADDRESS": _ip,
    "US_SSN": _ssn,
    "PERSON": _person,
    "STREET_ADDRESS": _address,
    "DATE_OF_BIRTH": _birth_date,
}
