"""Normalisation and de-obfuscation: detectors see normalised views whose spans map back to the original."""

from vallum.text.normalize import NormalizedText, View, normalize

__all__ = ["NormalizedText", "View", "normalize"]
