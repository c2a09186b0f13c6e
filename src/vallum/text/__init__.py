"""Normalisation and de-obfuscation: detectors see normalised views whose spans map back to the original."""

from vallum.text.chunking import chunks
from vallum.text.normalize import NormalizedText, Signal, View, normalize

__all__ = ["NormalizedText", "Signal", "View", "chunks", "normalize"]
