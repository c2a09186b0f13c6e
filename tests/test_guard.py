"""The Guard pipeline with small purpose-built detectors, so each behaviour has one reason to fail."""

import asyncio
from typing import ClassVar

import pytest

from vallum import Action, Finding, Guard, Message, Policy, Severity, Source, Span
from vallum.core.detector import ALL_SOURCES
from vallum.text.normalize import NormalizedText


class KeywordDetector:
    """Reports `word` wherever it occurs in the canonical view, with a fixed score."""

    name: ClassVar[str] = "keyword"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(self, word: str = "attack", score: float = 0.9) -> None:
        self.word, self.score = word, score
        self.batches: list[int] = []

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        view = text.primary
        found, start = [], view.text.find(self.word)
        while start >= 0:
            span = view.span(start, start + len(self.word))
            found.append(Finding(self.name, "injection", Severity.ERROR, self.score, span, self.word))
            start = view.text.find(self.word, start + 1)
        return found


class BatchKeywordDetector(KeywordDetector):
    def detect_batch(self, texts, sources, paranoia):
        self.batches.append(len(texts))
        return [self.detect(t, s, paranoia) for t, s in zip(texts, sources, strict=True)]


class BrokenDetector(KeywordDetector):
    name: ClassVar[str] = "broken"

    def detect(self, text, source, paranoia):
        raise RuntimeError("model file corrupted")


def test_benign_text_is_allowed_with_zero_injection_score():
    verdict = Guard(detectors=[KeywordDetector()]).scan("hello there")
    assert verdict.action is Action.ALLOW
    assert verdict.scores == {"injection": 0.0}
    assert verdict.categories == ()


def test_finding_over_threshold_blocks_and_names_category():
    verdict = Guard(detectors=[KeywordDetector()]).scan("please ATTACK now")
    assert verdict.action is Action.BLOCK
    assert verdict.categories == ("injection",)
    assert verdict.findings[0].span == Span(7, 13)


def test_score_between_flag_and_act_flags():
    verdict = Guard(detectors=[KeywordDetector(score=0.4)]).scan("attack")
    assert verdict.action is Action.FLAG


def test_scores_combine_by_noisy_or_across_detectors_not_within_one():
    same = Guard(detectors=[KeywordDetector(score=0.3)]).scan("attack attack attack")
    assert same.scores["injection"] == pytest.approx(0.3)
    a, b = KeywordDetector(score=0.3), KeywordDetector(score=0.3)
    b.name = "keyword2"  # type: ignore[misc]
    both = Guard(detectors=[a, b]).scan("attack")
    assert both.scores["injection"] == pytest.approx(1 - 0.7 * 0.7)


def test_redact_action_replaces_spans_in_original_text():
    policy = Policy.from_yaml("categories:\n  injection: {action: redact}\n")
    verdict = Guard(policy, detectors=[KeywordDetector()]).scan("one attack, two attack.")
    assert verdict.action is Action.REDACT
    assert verdict.redacted_text == "one <INJECTION_1>, two <INJECTION_1>."


def test_redaction_strategy_comes_from_policy_and_placeholders_restore_from_the_vault():
    from vallum.vault import Vault

    masked = Policy.from_yaml("categories:\n  injection: {action: redact, redaction: mask}\n")
    assert Guard(masked, detectors=[KeywordDetector()]).scan("an attack").redacted_text == "an ******"
    placeholder = Policy.from_yaml("categories:\n  injection: {action: redact}\n")
    vault = Vault()
    verdict = Guard(placeholder, detectors=[KeywordDetector()]).scan("an attack", vault=vault)
    assert verdict.redacted_text == "an <INJECTION_1>"
    assert vault.restore("answer about <INJECTION_1>") == "answer about attack"


def test_source_override_changes_the_action():
    policy = Policy.from_yaml("sources:\n  retrieval:\n    categories:\n      injection: {action: flag}\n")
    guard = Guard(policy, detectors=[KeywordDetector()])
    assert guard.scan("attack", source="retrieval").action is Action.FLAG
    assert guard.scan("attack", source="user").action is Action.BLOCK


def test_disabled_source_is_not_scanned():
    policy = Policy.from_yaml("sources:\n  system: {enabled: false}\n")
    verdict = Guard(policy, detectors=[KeywordDetector()]).scan("attack", source=Source.SYSTEM)
    assert verdict.action is Action.ALLOW
    assert verdict.findings == ()


def test_empty_text_is_allowed_without_running_detectors():
    detector = BrokenDetector()
    assert Guard(detectors=[detector]).scan("   ").action is Action.ALLOW


def test_failing_detector_blocks_when_fail_closed():
    verdict = Guard(detectors=[BrokenDetector()]).scan("anything")
    assert verdict.action is Action.BLOCK
    assert verdict.categories == ("guard",)
    assert "model file corrupted" in verdict.findings[0].evidence


def test_failing_detector_allows_when_fail_open_but_records_the_error():
    policy = Policy.from_yaml("fail_mode: open\n")
    verdict = Guard(policy, detectors=[BrokenDetector(), KeywordDetector()]).scan("fine text")
    assert verdict.action is Action.ALLOW
    assert any(f.subtype == "detector_error" for f in verdict.findings)


def test_oversize_text_is_blocked_by_default():
    policy = Policy.from_yaml("limits: {max_chars: 10}\n")
    verdict = Guard(policy, detectors=[KeywordDetector()]).scan("x" * 11)
    assert verdict.action is Action.BLOCK
    assert verdict.findings[0].subtype == "oversize"


def test_oversize_text_can_be_truncated_and_scanned():
    policy = Policy.from_yaml("limits: {max_chars: 10, oversize: truncate}\n")
    guard = Guard(policy, detectors=[KeywordDetector()])
    assert guard.scan("attack" + "x" * 20).action is Action.BLOCK
    assert guard.scan("x" * 20 + "attack").action is Action.ALLOW


def test_batch_uses_detect_batch_once_and_keeps_order():
    detector = BatchKeywordDetector()
    verdicts = Guard(detectors=[detector]).scan_batch(["fine", "attack", "", "also fine", "attack"])
    assert [v.action for v in verdicts] == [
        Action.ALLOW,
        Action.BLOCK,
        Action.ALLOW,
        Action.ALLOW,
        Action.BLOCK,
    ]
    assert detector.batches == [4]


def test_async_scan_matches_sync_scan():
    guard = Guard(detectors=[KeywordDetector()])
    long_text = "benign " * 10_000 + "attack"
    assert asyncio.run(guard.ascan(long_text)).action is guard.scan(long_text).action is Action.BLOCK


def test_message_carries_its_source():
    guard = Guard(detectors=[KeywordDetector()])
    verdict = guard.scan(Message("attack", source=Source.TOOL_RESULT))
    assert verdict.source is Source.TOOL_RESULT


def test_verdict_records_policy_label():
    policy = Policy.from_yaml("version: release-7\n")
    assert Guard(policy, detectors=[]).scan("x").policy_version.startswith("release-7@")


def test_scan_rejects_non_text():
    with pytest.raises(TypeError, match="str or Message"):
        Guard(detectors=[]).scan(b"bytes")  # type: ignore[arg-type]


class CountingStage(KeywordDetector):
    """A cascade stage that records which texts it saw and gives its own score."""

    name: ClassVar[str] = "big_model"

    def __init__(self, score: float) -> None:
        super().__init__(score=score)
        self.band = (0.2, 0.8)
        self.overrides = frozenset({"keyword"})
        self.seen: list[str] = []

    def detect(self, text, source, paranoia):
        self.seen.append(text.original)
        return [Finding(self.name, "injection", Severity.ERROR, self.score, None, "model")]


def test_cascade_stage_runs_only_where_fast_detector_is_unsure_and_replaces_it():
    stage = CountingStage(score=0.05)
    guard = Guard(detectors=[KeywordDetector(score=0.5), stage])
    unsure = guard.scan("attack")
    assert stage.seen == ["attack"]
    assert unsure.action is Action.ALLOW
    assert [f.detector for f in unsure.findings] == ["big_model"]
    assert guard.scan("nothing here").action is Action.ALLOW
    assert stage.seen == ["attack"]  # a confident 0.0 is outside the band


def test_cascade_stage_skipped_when_fast_detector_is_confident():
    stage = CountingStage(score=0.05)
    verdict = Guard(detectors=[KeywordDetector(score=0.95), stage]).scan("attack")
    assert stage.seen == []
    assert verdict.action is Action.BLOCK


def test_unknown_detector_in_policy_names_the_installed_ones():
    from vallum import DetectorError

    policy = Policy.from_yaml("detectors:\n  no_such_detector: {}\n")
    with pytest.raises(DetectorError, match=r"unknown detector 'no_such_detector'.*injection_signatures"):
        Guard(policy)


def test_detector_options_that_do_not_fit_are_a_clear_error():
    from vallum import DetectorError

    policy = Policy.from_yaml("detectors:\n  injection_model:\n    options: {no_such_option: 1}\n")
    with pytest.raises(DetectorError, match="injection_model"):
        Guard(policy)


def test_cascade_stage_leaves_sources_it_does_not_serve_to_the_fast_detectors():
    stage = CountingStage(score=0.05)
    stage.sources = frozenset({Source.USER})  # type: ignore[misc]
    verdict = Guard(detectors=[KeywordDetector(score=0.5), stage]).scan("attack", source=Source.RETRIEVAL)
    assert stage.seen == []
    assert [f.detector for f in verdict.findings] == ["keyword"]
