"""Payment card numbers (Luhn and brand) and IBANs (ISO 13616 mod-97 via python-stdnum)."""

from __future__ import annotations

from stdnum import iban, luhn

from vallum.pii.entity import CREDIT_CARD, IBAN
from vallum.pii.recognizer import PatternRecognizer, Validated, isolated

# (brand, prefixes as (low, high) inclusive ranges over the leading digits, lengths)
_BRANDS: tuple[tuple[str, tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    ("amex", ((34, 34), (37, 37)), frozenset({15})),
    ("visa", ((4, 4),), frozenset({13, 16, 19})),
    ("mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    ("discover", ((6011, 6011), (644, 649), (65, 65)), frozenset({16, 17, 18, 19})),
    ("diners", ((300, 305), (36, 36), (38, 39), (3095, 3095)), frozenset({14, 15, 16, 17, 18, 19})),
    ("jcb", ((3528, 3589),), frozenset({16, 17, 18, 19})),
    ("jcb", ((1800, 1800), (2131, 2131)), frozenset({15})),
    ("unionpay", ((62, 62),), frozenset({16, 17, 18, 19})),
    ("maestro", ((50, 50), (56, 69)), frozenset(range(12, 20))),
)


def card_brand(digits: str) -> str | None:
    """The brand whose prefix and length fit `digits`, or None."""
    for brand, ranges, lengths in _BRANDS:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return brand
    return None


class CreditCardRecognizer(PatternRecognizer):
    name = "credit_card"
    entity_type = CREDIT_CARD
    # Contiguous 12-19 digits, or the printed groupings 4-4-4-4(-3), 4-6-5 (Amex) and 4-6-4 (Diners).
    pattern = (
        r"\b(?:\d{12,19}|\d{4}[ \-]\d{4}[ \-]\d{4}[ \-]\d{1,7}(?:[ \-]\d{3})?|\d{4}[ \-]\d{6}[ \-]\d{4,5})\b"
    )
    context_words = ("card", "visa", "mastercard", "amex", "credit", "debit", "cc ", "cc#", "payment", "pan")

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        if not isolated(text, start, end):
            return None
        raw = text[start:end]
        digits = raw.replace(" ", "").replace("-", "")
        separators = {c for c in raw if not c.isdigit()}
        if len(separators) > 1 or not 12 <= len(digits) <= 19 or len(set(digits)) < 2:
            return None
        if not luhn.is_valid(digits):
            return None
        brand = card_brand(digits)
        if brand is None:
            return Validated(start, end, 0.35, "unknown")
        return Validated(start, end, 0.9 if separators else 0.8, brand)


class IbanRecognizer(PatternRecognizer):
    name = "iban"
    entity_type = IBAN
    pattern = r"(?i)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"
    context_words = ("iban", "bank", "account", "konto", "transfer", "sepa")

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        # The pattern may run into the next word ("GB29 NWBK ... 26819 and"): drop trailing groups until valid.
        for _ in range(8):
            if iban.is_valid(text[start:end]) and isolated(text, start, end):
                return Validated(start, end, 0.95, text[start : start + 2].upper())
            cut = text.rfind(" ", start, end)
            if cut <= start:
                return None
            end = cut
        return None
