"""Filling a text template's slots with seeded random choices, the way every synthetic generator does."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


def fill(template: str, slots: Mapping[str, Sequence[str]], rng: random.Random) -> str:
    """`template` with one random choice for every slot (slots the template does not name are drawn too, so
    a generator's draws do not depend on which template it picked)."""
    return template.format(**{key: rng.choice(options) for key, options in slots.items()})
