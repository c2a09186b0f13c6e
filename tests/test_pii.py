"""PII recognizers: each entity type found with its exact span, hard negatives left alone, bounded work."""

from __future__ import annotations

import time

import pytest

from vallum.core.types import Source
from vallum.detectors.pii import PIIDetector
from vallum.errors import DetectorError
from vallum.pii import PIIAnalyzer, ner_unavailable_reason
from vallum.text.normalize import normalize

ANALYZER = PIIAnalyzer()


def found(text: str, paranoia: int = 2) -> list[tuple[str, str]]:
    return [(e.type, text[e.start : e.end]) for e in ANALYZER.analyze(text, paranoia).entities]


@pytest.mark.parametrize(
    ("text", "entity_type", "value"),
    [
        ("Write to Jane.Doe+news@mail.example.co.uk today.", "EMAIL", "Jane.Doe+news@mail.example.co.uk"),
        ("Call me on (212) 555-0199 tonight.", "PHONE_NUMBER", "(212) 555-0199"),
        ("Office: +44 20 7946 0958.", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("Ruf an: +49 30 901820", "PHONE_NUMBER", "+49 30 901820"),
        ("Card 4111 1111 1111 1111 expires soon", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("amex 378282246310005.", "CREDIT_CARD", "378282246310005"),
        ("Pay to GB82 WEST 1234 5698 7654 32 please", "IBAN", "GB82 WEST 1234 5698 7654 32"),
        ("IBAN: DE89370400440532013000", "IBAN", "DE89370400440532013000"),
        ("My SSN is 536-22-8726.", "US_SSN", "536-22-8726"),
        ("NI number AB 12 34 56 C", "UK_NINO", "AB 12 34 56 C"),
        ("Steuer-ID 86095742719", "DE_TAX_ID", "86095742719"),
        ("NIR 2 95 10 99 126 111 93", "FR_NIR", "2 95 10 99 126 111 93"),
        ("DNI 12345678Z", "ES_DNI", "12345678Z"),
        ("NIE X1234567L", "ES_NIE", "X1234567L"),
        ("codice fiscale RSSMRA85T10A562S", "IT_FISCAL_CODE", "RSSMRA85T10A562S"),
        ("BSN 111222333", "NL_BSN", "111222333"),
        ("Aadhaar 2345 6789 0124", "IN_AADHAAR", "2345 6789 0124"),
        ("PAN ABCPE1234F", "IN_PAN", "ABCPE1234F"),
        ("login from 8.8.4.4 at noon", "IP_ADDRESS", "8.8.4.4"),
        ("client 2001:4860:4860::8888 connected", "IP_ADDRESS", "2001:4860:4860::8888"),
        (
            "Ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500 now",
            "STREET_ADDRESS",
            "1600 Pennsylvania Avenue NW, Washington, DC 20500",
        ),
        ("I was born on March 3, 1985 in Ohio", "DATE_OF_BIRTH", "March 3, 1985"),
        ("DOB: 12/03/1985", "DATE_OF_BIRTH", "12/03/1985"),
    ],
)
def test_entity_found_with_exact_span(text: str, entity_type: str, value: str) -> None:
    assert (entity_type, value) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 expires soon",  # Luhn fails
        "Pay to GB82 WEST 1234 5698 7654 33 please",  # IBAN mod-97 fails
        "My SSN is 000-12-3456.",  # area 000 is never issued
        "My SSN is 666-12-3456.",
        "My SSN is 078-05-1120.",  # the Woolworth wallet card number, blacklisted by the SSA
        "NI number GB 12 34 56 C",  # GB prefix is not allocated
        "Upgrade to version 1.2.3.4 today",  # a version, not an address
        "Build v10.0.0.1 is out",
        "The chain 1.2.3.4.5 is a version too",
        "Meeting at 10:30:00 on 2024-05-01",
        "Use std::vector::size and a::b",
        "The meeting is on 12/03/1985.",  # a date without a birth word is not a date of birth
        "Order 4471 shipped, 3 items, total 129.99",
        "contact: @handle and user@localhost",
    ],
)
def test_hard_negative_is_not_reported(text: str) -> None:
    assert found(text) == []


def test_spans_index_the_original_text_not_the_lowercased_view() -> None:
    text = "Ｍail:  Jane.DOE@Example.FR now"
    findings = PIIDetector(entities=["EMAIL"]).detect(normalize(text), Source.USER, 2)
    assert [text[f.span.start : f.span.end] for f in findings if f.span] == ["Jane.DOE@Example.FR"]


def test_email_with_non_ascii_local_part_is_found_whole() -> None:
    assert found("Mail Émile.Dupont@example.fr") == [("EMAIL", "Émile.Dupont@example.fr")]


def test_evidence_never_contains_the_value() -> None:
    text = "card 4111 1111 1111 1111 and bob@example.com"
    for finding in PIIDetector().detect(normalize(text), Source.USER, 2):
        assert "4111" not in finding.evidence and "bob@" not in finding.evidence


def test_card_number_that_is_also_a_phone_candidate_is_reported_once_as_card() -> None:
    assert found("pay with 4111-1111-1111-1111") == [("CREDIT_CARD", "4111-1111-1111-1111")]


def test_bare_nine_digits_need_context_or_high_paranoia_to_count_as_ssn() -> None:
    assert ("US_SSN", "536228726") not in found("ref 536228726", paranoia=2)
    assert ("US_SSN", "536228726") in found("ssn 536228726", paranoia=4)


def test_entities_option_limits_what_is_reported() -> None:
    analyzer = PIIAnalyzer(entities=["EMAIL"])
    text = "bob@example.com, card 4111 1111 1111 1111"
    assert [e.type for e in analyzer.analyze(text).entities] == ["EMAIL"]


def test_locales_option_selects_national_identifiers() -> None:
    german = PIIAnalyzer(locales=["de_DE"])
    assert "US_SSN" not in german.entities and "DE_TAX_ID" in german.entities
    assert "EMAIL" in german.entities  # global entities apply everywhere


def test_unknown_entity_is_a_clear_error() -> None:
    with pytest.raises(DetectorError, match="unknown PII entities"):
        PIIAnalyzer(entities=["SHOE_SIZE"])


def test_ner_entities_without_ner_backend_are_refused() -> None:
    with pytest.raises(DetectorError, match="NER backend"):
        PIIAnalyzer(entities=["PERSON"])


def test_pii_detector_is_registered_under_its_entry_point() -> None:
    from vallum.core.detector import available_detectors, create_detector

    assert "pii" in available_detectors()
    assert isinstance(create_detector("pii", {"entities": ["EMAIL"]}), PIIDetector)


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112 " * 5000,  # thousands of near-miss cards
        "1" * 1_000_000,  # a 1 MB digit string
        "1 " * 200_000,
        ("x@" * 100_000) + "a" * 100_000,
        "(555) 123-456x " * 5000,  # near-miss phone numbers
    ],
)
def test_adversarial_input_takes_bounded_time(text: str) -> None:
    start = time.perf_counter()
    ANALYZER.analyze(text, paranoia=4)
    assert time.perf_counter() - start < 5.0


def test_validation_budget_exhaustion_is_reported() -> None:
    detector = PIIDetector(entities=["PHONE_NUMBER"], max_candidates=10)
    text = " ".join(f"(555) 123-45{i:02d}x" for i in range(50))
    findings = detector.detect(normalize(text), Source.USER, 2)
    assert any(f.subtype == "scan_budget_exhausted" for f in findings)


NER_MISSING = ner_unavailable_reason()


@pytest.mark.skipif(NER_MISSING is not None, reason=f"NER backend not installed: {NER_MISSING}")
def test_ner_backend_finds_person_location_organization() -> None:
    analyzer = PIIAnalyzer(entities=["PERSON", "LOCATION", "ORGANIZATION"], ner=True)
    text = "My name is John Smith, I live in Paris and work at Google."
    types = {(e.type, text[e.start : e.end]) for e in analyzer.analyze(text).entities}
    assert {("PERSON", "John Smith"), ("LOCATION", "Paris"), ("ORGANIZATION", "Google")} <= types


def test_ner_required_but_missing_model_says_how_to_install() -> None:
    with pytest.raises(DetectorError, match="pip install"):
        PIIAnalyzer(ner=True, ner_model="no_such_spacy_model")
