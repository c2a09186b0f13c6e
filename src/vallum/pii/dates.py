"""Dates of birth: a well-formed date with a birth word just before it. A date alone is not PII here."""

from __future__ import annotations

import datetime as dt
import re

from vallum.pii.entity import DATE_OF_BIRTH
from vallum.pii.recognizer import PatternRecognizer, Validated, has_context

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = "(?i:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORDINAL = r"(?:st|nd|rd|th)?"
_PATTERN = (
    r"\b\d{4}-\d{1,2}-\d{1,2}\b"
    r"|\b\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})\b"
    r"|\b\d{1,2}" + _ORDINAL + r" (?:of )?" + _MONTH + r",? \d{4}\b"
    r"|\b" + _MONTH + r" \d{1,2}" + _ORDINAL + r",? \d{4}\b"
)
BIRTH_WORDS = (
    "born",
    "birth",
    "dob",
    "d.o.b",
    "geboren",
    "geb.",
    "né le",
    "née le",
    "nacido",
    "nacida",
    "nato il",
    "nata il",
    "naissance",
    "nacimiento",
)

_NUMBERS = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z]+")
EARLIEST_YEAR = 1900


def _two_digit_year(year: int, today: dt.date) -> int:
    return year + 2000 if year + 2000 <= today.year else year + 1900


def is_plausible_birth_date(value: str, today: dt.date | None = None) -> bool:
    """Some reading of `value` (year first, day first or month first) is a real past date since 1900."""
    today = today or dt.date.today()
    numbers = [int(n) for n in _NUMBERS.findall(value)]
    month_word = next((_MONTHS[w.lower()] for w in _WORD.findall(value) if w.lower() in _MONTHS), None)
    if month_word is not None and len(numbers) == 2:
        readings = [(numbers[1], month_word, numbers[0])]
    elif len(numbers) == 3 and len(_NUMBERS.findall(value)[0]) == 4:
        readings = [(numbers[0], numbers[1], numbers[2])]
    elif len(numbers) == 3:
        year = numbers[2] if numbers[2] >= 100 else _two_digit_year(numbers[2], today)
        readings = [(year, numbers[1], numbers[0]), (year, numbers[0], numbers[1])]
    else:
        return False
    for year, month, day in readings:
        try:
            date = dt.date(year, month, day)
        except ValueError:
            continue
        if date.year >= EARLIEST_YEAR and date <= today:
            return True
    return False


class DateOfBirthRecognizer(PatternRecognizer):
    name = "date_of_birth"
    entity_type = DATE_OF_BIRTH
    pattern = _PATTERN

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        if not has_context(text, start, BIRTH_WORDS) or not is_plausible_birth_date(text[start:end]):
            return None
        return Validated(start, end, 0.85)
