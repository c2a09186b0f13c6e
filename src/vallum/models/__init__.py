"""Shipped classifier artefacts and their pure-numpy runtimes."""
