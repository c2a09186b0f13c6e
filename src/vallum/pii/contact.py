"""E-mail addresses and phone numbers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import phonenumbers

from vallum.pii.entity import EMAIL, PHONE_NUMBER
from vallum.pii.recognizer import PatternRecognizer, ScanSettings, Validated, isolated

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


class EmailRecognizer(PatternRecognizer):
    name = "email"
    entity_type = EMAIL
    # Bounded repetitions: the longest legal local part is 64 characters, a label 63.
    pattern = r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}"

    def validate(self, text: str, start: int, end: int, settings: ScanSettings) -> Validated | None:
        if start > 0 and text[start - 1] in _LOCAL_CHARS:
            return None  # a local part longer than 64 characters: not an address
        local, _, domain = text[start:end].partition("@")
        local = local.lstrip(".")
        start = end - len(domain) - 1 - len(local)
        if not local or local.endswith(".") or ".." in local:
            return None
        labels = domain.split(".")
        tld = labels[-1]
        if any(not label or label[0] == "-" or label[-1] == "-" for label in labels):
            return None
        if not (tld.isalpha() and len(tld) >= 2) and not tld.lower().startswith("xn--"):
            return None
        return Validated(start, end, 0.95)


# Date and dotted-version shapes that the phone candidate pattern also accepts.
_NOT_A_PHONE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,3}(?:\.\d{1,3}){2,}|\d{1,2}:\d{2}(?::\d{2})?"
)
_SEPARATORS = frozenset(" .-/()")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15


class PhoneRecognizer(PatternRecognizer):
    """Phone numbers validated by `phonenumbers` for the configured regions.

    Strict mode is `phonenumbers`' VALID leniency (a number valid in some region), lenient mode (higher
    paranoia) its POSSIBLE leniency. We call `parse` on RE2 candidates instead of running
    `PhoneNumberMatcher` over the text: the matcher rescans with backtracking regexes and costs about
    four times as much per candidate; the candidate pattern plays its role here.
    """

    name = "phone"
    entity_type = PHONE_NUMBER
    pattern = r"(?:\+|\b00)?\(?\d{1,5}\)?(?:[ .\-/]{1,3}\(?\d{1,5}\)?|\d{1,5}){1,7}"
    context_words = ("phone", "call", "tel", "mobile", "cell", "fax", "contact", "whatsapp", "sms", "dial", "ring")

    def __init__(self, regions: Sequence[str]) -> None:
        super().__init__()
        self.phone_regions = tuple(r for r in regions if r in phonenumbers.SUPPORTED_REGIONS) or ("US",)

    def validate(self, text: str, start: int, end: int, settings: ScanSettings) -> Validated | None:
        # A trailing ")" belongs to the prose, not to the number, unless its "(" is inside.
        while end > start and text[end - 1] == ")" and "(" not in text[start : end - 1]:
            end -= 1
        if text[start] == "(" and ")" not in text[start:end]:
            start += 1
        if not isolated(text, start, end) or _continues_run(text, start, end):
            return None
        candidate = text[start:end]
        digits = sum(c.isdigit() for c in candidate)
        if not MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS or _NOT_A_PHONE.fullmatch(candidate):
            return None
        verdict = _classify(candidate, self.phone_regions)
        if verdict is None:
            return None
        region, valid = verdict
        if not valid and not settings.lenient_phones:
            return None
        formatted = candidate[0] == "+" or any(c in _SEPARATORS for c in candidate)
        score = (0.6 if formatted else 0.4) if valid else 0.3
        return Validated(start, end, score, region)


def _continues_run(text: str, start: int, end: int) -> bool:
    """A separator then a digit on either side: the candidate is a slice of a longer digit run."""
    if end + 1 < len(text) and text[end] in " .-/" and text[end + 1].isdigit():
        return True
    return start >= 2 and text[start - 1] in " .-/" and text[start - 2].isdigit()


@lru_cache(maxsize=4096)
def _classify(candidate: str, regions: tuple[str, ...]) -> tuple[str, bool] | None:
    """(region, valid) for the first region where the number is valid, else the first where it is possible."""
    international = candidate.startswith(("+", "00"))
    possible: str | None = None
    for region in (regions[0],) if international else regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.region_code_for_number(number) or region, True
        if possible is None and phonenumbers.is_possible_number(number):
            possible = region
    return (possible, False) if possible else None
