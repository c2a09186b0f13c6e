"""Labelled rows for the injection classifier, read from the shared training folder."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path("/work/shared/data/train")

# file stem -> role; files not named here (harmful requests, PII, secrets, model outputs) belong to other
# detectors' tasks. Harmful requests are left out on purpose: they are neither injections nor the
# benign requests we calibrate on, and the harmful-intent detector owns them.
INJECTION_FILES = (
    "attacks_garak",
    "attacks_jailbreak_inthewild",
    "attacks_jailbreak_templates_gptfuzz",
    "attacks_jailbreak_templates_pyrit",
    "attacks_promptinject",
    "attacks_pyrit_seed",
    "indirect_bipia_train",
    "indirect_injecagent",
    "benign_t0_prompts",
    "benign_oasst_seed",
    "benign_sensitive_donotanswer",
    "benign_ultrachat",
    "benign_task_data_openpi",
    "benign_gsm8k",
)
OPENPI = "benign_task_data_openpi"  # its short rows are the sentences of the synthetic documents
DATA_GROUP_FILES = frozenset({"indirect_bipia_train", "indirect_injecagent", "benign_task_data_openpi"})
SUBTYPES = ("jailbreak", "prompt_injection", "indirect_injection", "prompt_extraction")


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int
    subtype: str  # one of SUBTYPES for attacks, "benign" otherwise
    origin: str  # the group a leave-one-source-out run holds out (file stem, or "synthetic:<kind>")
    source_group: str  # "request" or "data": which threshold set calibrates on it
    position: str = ""  # where an indirect injection sits in a long document: start/middle/end
    payload: str = ""  # the injected instruction itself, when the source file says which it is
    derived_from: tuple[str, ...] = ()  # real source files a synthetic row was made from

    def comes_from(self, source: str) -> bool:
        """Whether holding `source` out must hold this row out too (it is that source, or made from it)."""
        return self.origin == source or source in self.derived_from

    @property
    def holdout(self) -> bool:
        """One row in five, chosen by content hash, is kept out of training for calibration."""
        return zlib.crc32(self.text.encode("utf-8")) % 5 == 0


def subtype_of(category: str) -> str:
    head = category.split("/", 1)[0]
    if head.startswith("indirect_injection"):
        return "indirect_injection"
    if head.startswith("prompt_injection"):
        return "prompt_injection"
    return head if head in SUBTYPES else "benign"


def load_examples(data_dir: Path = DATA_DIR) -> list[Example]:
    examples: list[Example] = []
    for stem in INJECTION_FILES:
        group = "data" if stem in DATA_GROUP_FILES else "request"
        with (data_dir / f"{stem}.jsonl").open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        # Files that list their injected instructions on their own let training label exactly the part of
        # a document that is the attack, instead of the whole window around it (the rest is benign text).
        payloads = sorted(
            {
                r["text"]
                for r in rows
                if r["category"].split("/", 1)[0].endswith("_payload") and len(r["text"]) >= 12
            },
            key=len,
            reverse=True,
        )
        for row in rows:
            category = row["category"]
            # Code/XSS/SQL payloads and raw injected snippets are other detectors' business.
            if "_payload" in category.split("/", 1)[0] or not row["text"].strip():
                continue
            label = int(row["label"])
            parts = category.split("/")
            position = parts[2] if len(parts) > 2 and parts[2] in ("start", "middle", "end") else ""
            payload = next((p for p in payloads if p in row["text"]), "") if label and position else ""
            examples.append(
                Example(
                    row["text"],
                    label,
                    subtype_of(category) if label else "benign",
                    stem,
                    group,
                    position,
                    payload,
                )
            )
    return examples
