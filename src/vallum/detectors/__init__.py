"""Detector families, one module each; registered by name under the `vallum.detectors` entry points."""
