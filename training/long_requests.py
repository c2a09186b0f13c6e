"""Benign multi-part requests: writing briefs, program specifications, passage tasks, personal situations.

Real users' long requests stack instructions ("Use a formal tone. Do not use bullet points. Write from the
perspective of ..."), which a model that has seen few of them confuses with jailbreak rules. These rows,
built from the pools in `long_requests.yaml` and, for pasted passages, from sentences of the benign task
data, teach that such a request is just a request.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from training.data import OPENPI, Example

POOLS = Path(__file__).with_name("long_requests.yaml")
ORIGIN = "synthetic:long_request"
PASSAGE_SOURCES = (OPENPI, "benign_ultrachat", "benign_t0_prompts")


def _brief(pools: dict[str, Any], rng: random.Random) -> str:
    slots = {
        "length": rng.choice(pools["lengths"]),
        "form": rng.choice(pools["forms"]),
        "subject": rng.choice(pools["subjects"]),
        "audience": rng.choice(pools["audiences"]),
    }
    constraints = [
        c.format(
            tone=rng.choice(pools["tones"]),
            n=rng.randrange(2, 6),
            words=rng.choice((300, 500, 800, 1200)),
            audience=slots["audience"],
            persona=rng.choice(pools["personas"]),
        )
        for c in rng.sample(pools["constraints"], rng.randrange(2, 6))
    ]
    return " ".join([rng.choice(pools["openers"]).format(**slots), *constraints])


def _specification(pools: dict[str, Any], rng: random.Random) -> str:
    head = f"Write a {rng.choice(pools['languages'])} program that {rng.choice(pools['tasks'])}."
    requirements = rng.sample(pools["requirements"], rng.randrange(3, 7))
    if rng.random() < 0.5:
        lines = [f"{i}. The program should {r}." for i, r in enumerate(requirements, 1)]
        return head + " Requirements:\n" + "\n".join(lines)
    return head + " It should " + ", it should ".join(requirements) + "."


def _passage_task(pools: dict[str, Any], rng: random.Random, sentences: list[str]) -> str:
    passage = " ".join(rng.sample(sentences, rng.randrange(2, 6)))
    return rng.choice(pools["passage_tasks"]).format(
        passage=passage, n=rng.randrange(2, 5), language_name=rng.choice(pools["language_names"])
    )


def _situation(pools: dict[str, Any], rng: random.Random) -> str:
    return f"{rng.choice(pools['situations'])} {rng.choice(pools['asks'])}"


def long_requests(rng: random.Random, sentences: list[str], count: int = 1000) -> list[Example]:
    pools = yaml.safe_load(POOLS.read_text(encoding="utf-8"))
    rows: dict[str, tuple[str, ...]] = {}
    for i in range(count):
        kind = i % 8  # briefs are the most varied kind, situations the least (60 distinct texts)
        if kind < 3:
            rows[_brief(pools, rng)] = ()
        elif kind < 5:
            rows[_specification(pools, rng)] = ()
        elif kind < 7:
            # The passages are sentences of the benign task data, and some frames ("Answer according to:",
            # "Options:") are common to UltraChat and T0 prompts: those sources held out, these rows are too.
            rows[_passage_task(pools, rng, sentences)] = PASSAGE_SOURCES
        else:
            rows[_situation(pools, rng)] = ()
    return [Example(t, 0, "benign", ORIGIN, "request", derived_from=rows[t]) for t in sorted(rows)]
