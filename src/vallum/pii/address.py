"""Street addresses in US and UK style: house number, capitalised street name, street-type word, then
optionally a unit, a city and a ZIP code or UK postcode. PO boxes too. Free-form international
addresses ("Koskikatu 25") need the NER backend or a gazetteer and are out of this recognizer's reach.
"""

from __future__ import annotations

import re

from vallum.pii.entity import STREET_ADDRESS
from vallum.pii.recognizer import PatternRecognizer, Validated

_STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Ter|Way|"
    "Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Trail|Trl|Close|Crescent|Gardens|Grove|Mews|Row|"
    "Walk|Hill|Green|Park|Plaza|Alley|Loop|Pike|Route|Rte"
)
_NAME_WORD = r"(?:[A-Z][A-Za-z'\-]{0,20}\.?|\d{1,3}(?:st|nd|rd|th))"
_DIRECTION = r"(?: (?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\b\.?)?"
_UNIT = r"(?:,?\s{1,3}(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Flat|#)\.?\s?#?[A-Za-z0-9\-]{1,6})?"
_CITY = r"[A-Z][A-Za-z\-]{1,20}(?: [A-Z][A-Za-z\-]{1,20}){0,2}"
_US_TAIL = r",?\s{1,3}" + _CITY + r",?\s{1,3}[A-Z]{2}\s{1,2}\d{5}(?:-\d{4})?"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_UK_TAIL = r",?\s{1,3}" + _CITY + r",?\s{1,3}" + _UK_POSTCODE
_STREET = (
    r"\b\d{1,6}[A-Za-z]?,?(?: "
    + _NAME_WORD
    + r"){1,4} (?i:"
    + _STREET_TYPES
    + r")\.?\b"
    + _DIRECTION
    + _UNIT
    + r"(?:"
    + _US_TAIL
    + r"|"
    + _UK_TAIL
    + r")?"
)
_PO_BOX = r"\b(?i:P\.? ?O\.? ?Box|Post Office Box) \d{1,6}\b(?:" + _US_TAIL + r")?"

_ENDS_WITH_POSTAL_CODE = re.compile(r"(?:\d{5}(?:-\d{4})?|" + _UK_POSTCODE + r")$")


class StreetAddressRecognizer(PatternRecognizer):
    name = "street_address"
    entity_type = STREET_ADDRESS
    regions = frozenset({"US", "GB", "CA", "AU", "IE"})
    pattern = _STREET + "|" + _PO_BOX
    context_words = (
        "address",
        "live at",
        "lives at",
        "located at",
        "ship to",
        "deliver",
        "mail to",
        "residing",
    )

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        value = text[start:end]
        if _ENDS_WITH_POSTAL_CODE.search(value):
            return Validated(start, end, 0.85)
        return Validated(start, end, 0.6)
