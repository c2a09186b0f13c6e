"""Every generated model file gets the verdict it should: every unsafe route caught, no safe artefact flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.supplychain_corpus import Sample, samples, write_corpus
from vallum.supplychain import FileVerdict, ModelScanner

SAMPLES = samples()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    return {sample.name: path for path, sample in write_corpus(root)}


@pytest.fixture(scope="module")
def scanner() -> ModelScanner:
    return ModelScanner()


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.unsafe], ids=lambda s: s.name)
def test_unsafe_file_is_caught(sample: Sample, corpus: dict[str, Path], scanner: ModelScanner) -> None:
    report = scanner.scan_file(corpus[sample.name])
    assert report.verdict is FileVerdict.UNSAFE, (sample.route, report.findings)
    assert any(f.severity >= scanner.policy.fail_severity for f in report.findings)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if not s.unsafe], ids=lambda s: s.name)
def test_safe_file_is_not_flagged(sample: Sample, corpus: dict[str, Path], scanner: ModelScanner) -> None:
    report = scanner.scan_file(corpus[sample.name])
    assert report.verdict is FileVerdict.SAFE, (sample.route, report.findings)


def test_no_format_is_skipped(corpus: dict[str, Path], scanner: ModelScanner) -> None:
    skipped = [r.path for r in scanner.scan(corpus.values()) if r.verdict is FileVerdict.UNSUPPORTED]
    assert skipped == []


def test_scanning_never_runs_the_payload(tmp_path: Path, scanner: ModelScanner) -> None:
    canary = tmp_path / "canary"
    payload = f"open({str(canary)!r}, 'w').write('ran')"
    evil = tmp_path / "canary.pkl"
    evil.write_bytes(b"cbuiltins\nexec\n(S" + repr(payload).encode() + b"\ntR.")
    report = scanner.scan_file(evil)
    assert report.verdict is FileVerdict.UNSAFE
    assert not canary.exists()
