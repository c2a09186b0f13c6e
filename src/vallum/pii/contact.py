"""E-mail addresses and phone numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

import phonenumbers
import re2

from vallum.pii.entity import EMAIL, PHONE_NUMBER, PIIEntity
from vallum.pii.recognizer import Budget, PatternRecognizer, Validated, isolated

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


class EmailRecognizer(PatternRecognizer):
    name = "email"
    entity_type = EMAIL
    # Bounded repetitions: the longest legal local part is 64 characters, a label 63.
    pattern = r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}"

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        # Internationalised local parts ("Émile.Dupont@"): RE2 matched only the ASCII tail, take the rest.
        at = text.find("@", start, end)
        while start > 0 and at - start < 64 and text[start - 1].isalnum() and not text[start - 1].isascii():
            start -= 1
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


# US SSN, date and dotted-version shapes that the phone candidate pattern also accepts.
_NOT_A_PHONE = re.compile(
    r"\d{3}-\d{2}-\d{4}|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,3}(?:\.\d{1,3}){2,}|\d{1,2}:\d{2}(?::\d{2})?"
)
_RUN = r"(?:\+|\b00)?\(?\d[\d ().\-/]{4,40}\d(?: ?(?:x|ext\.?|extension) ?\d{1,6})?"
_EXTENSION = re.compile(r" ?(?:x|ext\.?|extension) ?(?=\d)")
_SEPARATORS = frozenset(" .-/()")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15


class PhoneRecognizer(PatternRecognizer):
    """Phone numbers validated by `phonenumbers` for the configured regions.

    A number valid for one of the regions (`phonenumbers`' VALID leniency) scores 0.4-0.6, formatted
    ones higher; a merely possible one (POSSIBLE leniency: right length) scores 0.3 and needs a context
    word or paranoia 4 to be reported. We call `parse` on RE2 candidates instead of running
    `PhoneNumberMatcher` over the text: the matcher rescans with backtracking regexes and costs about
    four times as much per candidate; the candidate pattern plays its role here.
    """

    name = "phone"
    entity_type = PHONE_NUMBER
    pattern = (
        r"(?:\+|\b00)?\(?\d{1,5}\)?(?:[ .\-/]{0,3}\(?\d{1,5}\)?){1,7}(?: ?(?:x|ext\.?|extension) ?\d{1,6}\b)?"
    )
    context_words = (
        "phone",
        "call",
        "tel",
        "mobile",
        "cell",
        "fax",
        "contact",
        "whatsapp",
        "sms",
        "text me",
        "dial",
        "ring",
        "reach",
        "hotline",
        "landline",
    )

    def __init__(self, regions: Sequence[str]) -> None:
        super().__init__()
        self.phone_regions = tuple(r for r in regions if r in phonenumbers.SUPPORTED_REGIONS) or ("US",)
        self._runs = re2.compile(_RUN)

    def find(self, text: str, budget: Budget) -> Iterator[PIIEntity]:
        # Most numbers in prose are short ("3 items", "2019"): the structured pattern only looks inside
        # runs of digits and separators long enough to be a phone number, which keeps prose cheap.
        for run in self._runs.finditer(text):
            yield from super().find_in(text, budget, run.start(), run.end())

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        # A trailing ")" belongs to the prose, not to the number, unless its "(" is inside.
        while end > start and text[end - 1] == ")" and "(" not in text[start : end - 1]:
            end -= 1
        if text[start] == "(" and ")" not in text[start:end]:
            start += 1
        if not isolated(text, start, end) or _continues_run(text, start, end):
            return None
        candidate = text[start:end]
        digits = sum(c.isdigit() for c in _EXTENSION.split(candidate, maxsplit=1)[0])
        if not MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS or _NOT_A_PHONE.fullmatch(candidate):
            return None
        verdict = _classify(candidate, self.phone_regions)
        if verdict is None:
            return None
        region, valid = verdict
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
