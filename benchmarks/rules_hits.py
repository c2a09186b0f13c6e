"""Per-rule hit counts of the injection signatures on benign vs attack training files.

    python benchmarks/rules_hits.py [--data /work/shared/data/train] [--paranoia 4] [--examples 3]

Paranoia-1 rules should have (near) zero benign hits. Texts from document-like files (indirect_*,
benign_task_data_*) are scanned as `retrieval`, so source-restricted rules are exercised on them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from vallum.core.types import Source
from vallum.detectors.signatures import InjectionSignatures
from vallum.text.normalize import normalize

DOCUMENT_FILES = ("indirect_", "benign_task_data_")


def _rows(data_dir: Path) -> list[tuple[str, Source, bool, str]]:
    rows = []
    for path in sorted(data_dir.glob("*.jsonl")):
        if not path.name.startswith(("benign_", "attacks_", "indirect_")):
            continue
        source = Source.RETRIEVAL if path.name.startswith(DOCUMENT_FILES) else Source.USER
        with path.open(encoding="utf-8") as lines:  # not splitlines(): texts hold U+2028
            for line in lines:
                row = json.loads(line)
                rows.append((row["text"], source, row["label"] == 1, path.stem))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/train"))
    parser.add_argument("--paranoia", type=int, default=4)
    parser.add_argument("--examples", type=int, default=0, help="benign hits to print per rule")
    args = parser.parse_args()

    detector = InjectionSignatures()
    rows = _rows(args.data)
    benign_total = sum(not attack for _, _, attack, _ in rows)
    attack_total = len(rows) - benign_total
    benign_hits: Counter[str] = Counter()
    attack_hits: Counter[str] = Counter()
    benign_samples: dict[str, list[str]] = defaultdict(list)
    caught: Counter[tuple[str, int]] = Counter()  # (file, paranoia 1 or args.paranoia)
    rows_per_file: Counter[str] = Counter()
    for text, source, attack, stem in rows:
        findings = detector.detect(normalize(text), source, args.paranoia)
        for finding in findings:
            assert finding.rule_id is not None
            if attack:
                attack_hits[finding.rule_id] += 1
            else:
                benign_hits[finding.rule_id] += 1
                if len(benign_samples[finding.rule_id]) < args.examples:
                    benign_samples[finding.rule_id].append(f"{stem}: …{finding.evidence}…")
        rows_per_file[stem] += 1
        if findings:
            caught[stem, args.paranoia] += 1
        if any(f.rule_id and _level(detector, f.rule_id) == 1 for f in findings):
            caught[stem, 1] += 1

    print(f"benign rows: {benign_total}   attack rows: {attack_total}   scanned at paranoia {args.paranoia}")
    print(f"{'rule':<14}{'PL':>3} {'severity':<9}{'benign':>8}{'attack':>8}  subtype")
    for rule in detector.rules:
        print(
            f"{rule.id:<14}{rule.paranoia:>3} {rule.severity:<9}"
            f"{benign_hits[rule.id]:>8}{attack_hits[rule.id]:>8}  {rule.subtype}"
        )
        for sample in benign_samples[rule.id]:
            print(f"{'':>16}{sample[:140]!r}")
    print(
        f"\n{'file':<40}{'rows':>7}{'hit PL1':>9}{f'hit PL{args.paranoia}':>9}  (label-0 rows of mixed files too)"
    )
    for stem, total in sorted(rows_per_file.items()):
        print(f"{stem:<40}{total:>7}{caught[stem, 1]:>9}{caught[stem, args.paranoia]:>9}")


def _level(detector: InjectionSignatures, rule_id: str) -> int:
    return next(rule.paranoia for rule in detector.rules if rule.id == rule_id)


if __name__ == "__main__":
    main()
