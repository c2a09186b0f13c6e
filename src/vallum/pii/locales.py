"""Locale names as users write them (`en_US`, `de-DE`, `UK`, `fr`) reduced to ISO 3166 region codes."""

from __future__ import annotations

from collections.abc import Iterable

from vallum.errors import DetectorError

# Regions whose national identifiers and phone numbering plans we know; the default when no locale is set.
DEFAULT_REGIONS: tuple[str, ...] = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "IN",
    "CA",
    "AU",
    "IE",
    "BE",
    "CH",
    "AT",
)

_ALIASES = {"UK": "GB", "EN": "US", "DE": "DE", "FR": "FR", "ES": "ES", "IT": "IT", "NL": "NL", "HI": "IN"}


def region_of(locale: str) -> str:
    """`en_US` / `en-us` -> `US`; a bare language or region code (`uk`, `de`) -> its region."""
    cleaned = locale.strip().replace("-", "_")
    if not cleaned:
        raise DetectorError("empty locale; use a region such as 'US' or a locale such as 'en_GB'")
    code = cleaned.rsplit("_", 1)[-1].upper()
    code = _ALIASES.get(code, code)
    if len(code) != 2 or not code.isalpha():
        raise DetectorError(f"locale {locale!r} has no two-letter region; use e.g. 'US', 'GB' or 'de_DE'")
    return code


def regions_of(locales: Iterable[str] | None) -> tuple[str, ...]:
    if locales is None:
        return DEFAULT_REGIONS
    if isinstance(locales, str):
        locales = [locales]
    return tuple(dict.fromkeys(region_of(loc) for loc in locales))
