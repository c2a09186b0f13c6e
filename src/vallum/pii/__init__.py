"""PII recognition: validated pattern recognizers (python-stdnum, phonenumbers) and an optional NER backend."""

from vallum.pii.entity import PIIEntity
from vallum.pii.ner import DEFAULT_NER_MODEL, ner_unavailable_reason
from vallum.pii.registry import Analysis, PIIAnalyzer, known_entities

__all__ = [
    "DEFAULT_NER_MODEL",
    "Analysis",
    "PIIAnalyzer",
    "PIIEntity",
    "known_entities",
    "ner_unavailable_reason",
]
