"""The recognizer registry and the analyzer: which recognizers run for a policy's entities and locales,
and how their raw entities become one non-overlapping, thresholded list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from vallum.errors import DetectorError
from vallum.pii.address import StreetAddressRecognizer
from vallum.pii.contact import EmailRecognizer, PhoneRecognizer
from vallum.pii.dates import DateOfBirthRecognizer
from vallum.pii.entity import NER_ENTITIES, PIIEntity
from vallum.pii.financial import CreditCardRecognizer, IbanRecognizer
from vallum.pii.locales import regions_of
from vallum.pii.national_ids import national_id_recognizers
from vallum.pii.ner import DEFAULT_NER_MODEL, PresidioNer, ner_unavailable_reason
from vallum.pii.network import IPv4Recognizer, IPv6Recognizer
from vallum.pii.recognizer import DEFAULT_MAX_CANDIDATES, Budget, Recognizer
from vallum.spans import non_overlapping

log = logging.getLogger(__name__)

# Lowest confidence reported at each paranoia level (1 = fewest false positives).
MIN_SCORE = {1: 0.55, 2: 0.45, 3: 0.35, 4: 0.25}

NerOption = bool | str  # False: off, True: required (error when missing), "auto": on when installed


@dataclass(frozen=True, slots=True)
class Analysis:
    entities: tuple[PIIEntity, ...]
    # Recognizers that hit their validation budget on this text: what follows their last candidate went unchecked.
    truncated: tuple[str, ...] = ()


def pattern_recognizers(regions: tuple[str, ...]) -> list[Recognizer]:
    """Every built-in (non-NER) recognizer, phone numbering plans taken from `regions`."""
    return [
        EmailRecognizer(),
        PhoneRecognizer(regions),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IPv4Recognizer(),
        IPv6Recognizer(),
        StreetAddressRecognizer(),
        DateOfBirthRecognizer(),
        *national_id_recognizers(),
    ]


def known_entities() -> frozenset[str]:
    return frozenset(t for r in pattern_recognizers(("US",)) for t in r.entity_types) | NER_ENTITIES


class PIIAnalyzer:
    """Runs the recognizers chosen by `entities` and `locales` over a text.

    `entities` None means every entity whose recognizer belongs to one of the locales (global ones such as
    e-mail always do). Naming an entity explicitly runs its recognizer whatever the locales; the locales
    still choose the phone numbering plans. PERSON / LOCATION / ORGANIZATION need `ner`.
    """

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        locales: Iterable[str] | None = None,
        ner: NerOption = False,
        ner_model: str = DEFAULT_NER_MODEL,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        regions = regions_of(locales)
        wanted = _checked_entities(entities)
        ner_on = _ner_enabled(ner, ner_model, wanted)
        chosen: list[Recognizer] = []
        for recognizer in pattern_recognizers(regions):
            if wanted is not None:
                if recognizer.entity_types & wanted:
                    chosen.append(recognizer)
            elif not recognizer.regions or recognizer.regions & set(regions):
                chosen.append(recognizer)
        if ner_on:
            chosen.append(PresidioNer(ner_model))
        self.recognizers = tuple(chosen)
        self.uses_ner = ner_on
        self.entities = frozenset(t for r in chosen for t in r.entity_types) & (wanted or known_entities())
        self.regions = regions
        self.max_candidates = max_candidates

    def analyze(self, text: str, paranoia: int = 2) -> Analysis:
        level = min(max(paranoia, 1), 4)
        threshold = MIN_SCORE[level]
        found: list[PIIEntity] = []
        truncated: list[str] = []
        for recognizer in self.recognizers:
            budget = Budget(self.max_candidates)
            found.extend(
                e for e in recognizer.find(text, budget) if e.score >= threshold and e.type in self.entities
            )
            if budget.exhausted:
                truncated.append(recognizer.name)
        kept = non_overlapping(found, lambda e: (e.start, e.end), lambda e: e.score)
        return Analysis(tuple(kept), tuple(truncated))


def _checked_entities(entities: Iterable[str] | None) -> frozenset[str] | None:
    if entities is None:
        return None
    if isinstance(entities, str):
        entities = [entities]
    wanted = frozenset(e.strip().upper() for e in entities)
    unknown = wanted - known_entities()
    if unknown:
        raise DetectorError(
            f"unknown PII entities {sorted(unknown)}; known entities: {', '.join(sorted(known_entities()))}"
        )
    return wanted


def _ner_enabled(ner: NerOption, model: str, wanted: frozenset[str] | None) -> bool:
    if ner not in (True, False, "auto"):
        raise DetectorError(f"pii option ner must be true, false or 'auto', not {ner!r}")
    needs_ner = sorted(wanted & NER_ENTITIES) if wanted else []
    if ner is False:
        if needs_ner:
            raise DetectorError(
                f"PII entities {needs_ner} need the NER backend; set the pii option ner: true"
            )
        return False
    reason = ner_unavailable_reason(model)
    if reason is None:
        return True
    if ner is True:
        raise DetectorError(reason)
    log.info("PII NER backend off: %s", reason)
    return False
