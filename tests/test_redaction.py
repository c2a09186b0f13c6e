"""Redaction strategies and overlap handling."""

from __future__ import annotations

import pytest
from stdnum import iban, luhn

from vallum.core.types import Finding, Severity, Span
from vallum.redaction import RedactionError, RedactionOptions, Strategy, keyed_hash, mask, redact, synthetic
from vallum.vault import Vault

TEXT = "Mail bob@example.com or amy@example.org, again bob@example.com; card 4111-1111-1111-1111."


def finding(
    text: str, value: str, subtype: str, score: float = 0.9, nth: int = 0, category: str = "pii"
) -> Finding:
    start = -1
    for _ in range(nth + 1):
        start = text.index(value, start + 1)
    return Finding("pii", category, Severity.ERROR, score, Span(start, start + len(value)), subtype=subtype)


FINDINGS = [
    finding(TEXT, "bob@example.com", "EMAIL"),
    finding(TEXT, "amy@example.org", "EMAIL"),
    finding(TEXT, "bob@example.com", "EMAIL", nth=1),
    finding(TEXT, "4111-1111-1111-1111", "CREDIT_CARD"),
]


def test_placeholders_are_numbered_per_distinct_value() -> None:
    result = redact(TEXT, FINDINGS, "placeholder")
    assert result.text == "Mail <EMAIL_1> or <EMAIL_2>, again <EMAIL_1>; card <CREDIT_CARD_1>."


def test_mask_keeps_layout_and_last_four_card_digits() -> None:
    result = redact(TEXT, FINDINGS, Strategy.MASK)
    assert "****-****-****-1111" in result.text
    assert "***@*******.***" in result.text


def test_mask_can_hide_every_card_digit() -> None:
    result = redact(TEXT, FINDINGS[3:], "mask", options=RedactionOptions(keep_last_card_digits=0))
    assert "****-****-****-****" in result.text


def test_hash_is_keyed_short_and_stable_for_the_same_value() -> None:
    key = b"k" * 32
    result = redact(TEXT, FINDINGS, "hash", options=RedactionOptions(hash_key=key))
    token = f"<EMAIL:{keyed_hash('bob@example.com', key)}>"
    assert result.text.count(token) == 2
    assert keyed_hash("bob@example.com", b"x" * 32) != keyed_hash("bob@example.com", key)


def test_short_hash_key_is_refused() -> None:
    with pytest.raises(RedactionError, match="16 bytes"):
        redact(TEXT, FINDINGS, "hash", options=RedactionOptions(hash_key=b"short"))


def test_synthetic_values_are_well_formed_and_deterministic_within_a_request() -> None:
    vault = Vault()
    result = redact(TEXT, FINDINGS, "synthetic", vault)
    emails = [r.replacement for r in result.replacements if r.label == "EMAIL"]
    assert emails[0].endswith("@example.com") and emails[0] != "bob@example.com"
    assert emails[0] == emails[2] and emails[0] != emails[1]
    card = next(r.replacement for r in result.replacements if r.label == "CREDIT_CARD")
    assert luhn.is_valid(card.replace("-", "")) and card.count("-") == 3
    assert iban.is_valid(synthetic("IBAN", "DE89370400440532013000", seed="r1") or "")


def test_synthetic_values_differ_between_requests() -> None:
    assert synthetic("EMAIL", "bob@example.com", "request-a") != synthetic(
        "EMAIL", "bob@example.com", "request-b"
    )


def test_overlapping_spans_longest_wins() -> None:
    text = "call 4111 1111 1111 1111 now"
    card = finding(text, "4111 1111 1111 1111", "CREDIT_CARD", score=0.8)
    phone = finding(text, "4111 1111 1111", "PHONE_NUMBER", score=0.95)
    assert redact(text, [phone, card], "placeholder").text == "call <CREDIT_CARD_1> now"


def test_overlapping_spans_of_equal_length_most_confident_wins() -> None:
    text = "id 536-22-8726 here"
    ssn = finding(text, "536-22-8726", "US_SSN", score=0.85)
    phone = finding(text, "536-22-8726", "PHONE_NUMBER", score=0.6)
    assert redact(text, [phone, ssn], "placeholder").text == "id <US_SSN_1> here"


def test_strategy_per_subtype_then_category() -> None:
    result = redact(TEXT, FINDINGS, {"CREDIT_CARD": "mask", "pii": "placeholder"})
    assert result.text == "Mail <EMAIL_1> or <EMAIL_2>, again <EMAIL_1>; card ****-****-****-1111."


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(RedactionError, match="mask, hash, placeholder, synthetic"):
        redact(TEXT, FINDINGS, "shred")


def test_replacements_do_not_carry_original_values() -> None:
    result = redact(TEXT, FINDINGS, "placeholder")
    assert all("bob@" not in repr(r) for r in result.replacements)


def test_findings_without_span_are_ignored() -> None:
    no_span = Finding("pii", "pii", Severity.NOTICE, 0.0)
    assert redact("plain", [no_span]).text == "plain"


def test_mask_function_hides_letters_and_digits() -> None:
    assert mask("AB 12 34 56 C") == "** ** ** ** *"
