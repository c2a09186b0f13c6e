"""Reading the YAML data files vallum ships (rules, word lists) quickly, so start-up stays well under a second."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's C parser is an order of magnitude faster than the pure-Python one on our rule files;
# PyYAML wheels ship it, source builds without libyaml fall back to the Python loader.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no arbitrary objects), as `yaml.safe_load` does."""
    return yaml.load(text, Loader=_Loader)
