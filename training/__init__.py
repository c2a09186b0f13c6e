"""Reproducible training pipelines for vallum's shipped model artefacts."""
