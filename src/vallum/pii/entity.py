"""What a PII recognizer reports: one typed span of the original text with a confidence."""

from __future__ import annotations

from dataclasses import dataclass

EMAIL = "EMAIL"
PHONE_NUMBER = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN"
IP_ADDRESS = "IP_ADDRESS"
STREET_ADDRESS = "STREET_ADDRESS"
DATE_OF_BIRTH = "DATE_OF_BIRTH"
US_SSN = "US_SSN"
UK_NINO = "UK_NINO"
DE_TAX_ID = "DE_TAX_ID"
FR_NIR = "FR_NIR"
ES_DNI = "ES_DNI"
ES_NIE = "ES_NIE"
IT_FISCAL_CODE = "IT_FISCAL_CODE"
NL_BSN = "NL_BSN"
IN_AADHAAR = "IN_AADHAAR"
IN_PAN = "IN_PAN"
PERSON = "PERSON"
LOCATION = "LOCATION"
ORGANIZATION = "ORGANIZATION"

NER_ENTITIES = frozenset({PERSON, LOCATION, ORGANIZATION})


@dataclass(frozen=True, slots=True)
class PIIEntity:
    """Half-open range [start, end) of the original text holding one value of `type`."""

    type: str
    start: int
    end: int
    score: float
    recognizer: str
    # Non-identifying detail such as a card brand or a phone region; never the value itself.
    detail: str = ""

    @property
    def length(self) -> int:
        return self.end - self.start
