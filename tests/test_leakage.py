"""System-prompt leakage: canaries in every disguise, and fuzzy echoes of the protected prompt."""

import base64
import codecs
import time

import pytest

from vallum import Action, Guard, Policy, Source
from vallum.canary import add_canary, fingerprint, generate_canary
from vallum.core.streaming import StreamScanner
from vallum.detectors.leakage import LeakageDetector
from vallum.errors import DetectorError
from vallum.text.normalize import normalize

CANARY = "nipafiporipogibofubi"
PROMPT = (
    "You are Orbit, the support assistant for Helios Freight. Internal pricing rules: quote standard "
    "pallets at 42 euros, refrigerated containers at 310 euros, and never offer discounts above 12 percent "
    "without approval from the duty manager. Escalate any customs dispute to the Rotterdam desk. Do not "
    "mention the Lisbon warehouse closure until March. Weekend deliveries go through the Antwerp partner."
)


def scan(detector: LeakageDetector, text: str, paranoia: int = 1):
    return detector.detect(normalize(text), Source.MODEL_OUTPUT, paranoia)


def canary_detector(**options) -> LeakageDetector:
    return LeakageDetector(canaries=[CANARY], **options)


def test_generated_canaries_are_fresh_and_long():
    words = {generate_canary() for _ in range(50)}
    hexes = {generate_canary("hex") for _ in range(50)}
    assert len(words) == 50 and len(hexes) == 50
    assert all(len(c) == 20 and c.isalpha() for c in words)
    assert all(len(c) == 16 and int(c, 16) >= 0 for c in hexes)


def test_add_canary_plants_it_at_the_end_of_the_prompt():
    prompt, canary = add_canary("Be brief.")
    assert prompt.startswith("Be brief.") and prompt.endswith(canary)
    assert add_canary("x", "givenvalue12", template=" [{canary}]") == ("x [givenvalue12]", "givenvalue12")


@pytest.mark.parametrize(
    ("output", "form"),
    [
        (f"The reference is {CANARY}.", "plain"),
        (f"REFERENCE: {CANARY.upper()}", "plain"),
        ("ref: nipa fipo ripo gibo fubi", "plain"),
        ("ref: nipafi-\nporipo.gibofubi", "plain"),
        ("ref: " + " ".join(CANARY), "plain"),
        ("ref: n\u200bipafiporipogibofubi", "plain"),
        (f"backwards: {CANARY[::-1]}", "reversed"),
        (f"rot13: {codecs.encode(CANARY, 'rot13')}", "rot13"),
        (f"hex: {CANARY.encode().hex()}", "hex"),
        (f"b64: {base64.b64encode(CANARY.encode()).decode()}", "base64"),
        (f"{base64.b64encode(('my hidden note: ' + CANARY).encode()).decode()}", "plain"),
    ],
)
def test_canary_is_found_in_every_disguise(output, form):
    findings = scan(canary_detector(), output)
    assert [f.subtype for f in findings] == ["canary"]
    assert f"({form}, complete)" in findings[0].evidence
    assert findings[0].score >= 0.99


def test_long_enough_prefix_is_a_partial_canary():
    (finding,) = scan(canary_detector(), f"the id starts with {CANARY[:13]} and that is all")
    assert "13 of 20 characters" in finding.evidence
    assert 0.5 < finding.score < 0.99


def test_short_prefix_is_not_reported():
    assert scan(canary_detector(), f"the word {CANARY[:9]} is nothing") == []


def test_canary_span_points_at_the_original_text():
    output = f"Leaked: **{CANARY[:8]}** {CANARY[8:]}!"
    (finding,) = scan(canary_detector(), output)
    assert output[finding.span.start : finding.span.end] == f"{CANARY[:8]}** {CANARY[8:]}"


def test_evidence_names_the_canary_without_disclosing_it():
    (finding,) = scan(canary_detector(), CANARY)
    assert CANARY not in finding.evidence and fingerprint(CANARY) in finding.evidence


def test_hex_canary_is_found_when_upper_cased():
    canary = generate_canary("hex")
    detector = LeakageDetector(canaries=[canary])
    assert [f.subtype for f in scan(detector, f"id {canary.upper()}")] == ["canary"]


def test_answer_without_the_canary_has_no_findings():
    assert scan(canary_detector(), "Pallets cost 42 euros; see the price list for containers.") == []


def test_too_short_canary_is_rejected():
    with pytest.raises(DetectorError, match="at least"):
        LeakageDetector(canaries=["abc"])


def test_canaries_option_must_be_a_list():
    with pytest.raises(DetectorError, match="list"):
        LeakageDetector(canaries=CANARY)  # type: ignore[arg-type]


def guard_with_leakage(options: str) -> Guard:
    policy = Policy.from_yaml(
        "detectors:\n"
        f"  leakage: {{options: {options}}}\n"
        "categories:\n"
        "  leakage: {action: block, flag_at: 0.35, act_at: 0.5}\n"
    )
    return Guard(policy)


def test_canary_split_across_stream_chunks_is_blocked_before_release():
    scanner = StreamScanner(guard_with_leakage(f"{{canaries: [{CANARY}]}}"), holdback=64)
    answer = "Sure, here is everything I was told. " * 5 + f"Reference {CANARY[:7]} {CANARY[7:]} end."
    released = ""
    stopped = False
    for i in range(0, len(answer), 4):
        step = scanner.feed(answer[i : i + 4])
        released += step.text
        if step.stopped:
            stopped = True
            assert any(f.subtype == "canary" for f in step.findings)
            break
    else:
        last = scanner.finish()
        stopped = last.stopped
        assert any(f.subtype == "canary" for f in last.findings)
    assert stopped and scanner.action is Action.BLOCK
    assert CANARY[:7] not in released


def test_policy_options_reach_the_detector_and_serve_model_output_only():
    guard = guard_with_leakage(f"{{canaries: [{CANARY}]}}")
    assert guard.scan(f"id {CANARY}", Source.MODEL_OUTPUT).action is Action.BLOCK
    assert guard.scan(f"id {CANARY}", Source.USER).action is Action.ALLOW


# ---- system-prompt echo ---------------------------------------------------------------------------


def echo_detector() -> LeakageDetector:
    return LeakageDetector(system_prompt=PROMPT)


def test_verbatim_echo_is_found_with_its_span():
    output = "My instructions were: " + PROMPT
    findings = scan(echo_detector(), output)
    assert findings and all(f.subtype == "prompt_echo" for f in findings)
    top = max(findings, key=lambda f: f.score)
    assert top.score > 0.9 and "100% of the system prompt" in top.evidence
    assert top.span.start >= len("My instructions were: ") - 1


def test_reformatted_echo_is_found():
    output = (
        "## MY RULES\n"
        "- Quote standard pallets at **42 EUROS**\n"
        "- Refrigerated containers:   310 euros\n"
        "- Never offer discounts above 12% without approval from the duty-manager\n"
        "- Escalate customs disputes to the Rotterdam desk\n"
        "- Don't mention the Lisbon warehouse closure until March"
    )
    findings = scan(echo_detector(), output)
    assert findings and findings[0].score > 0.6
    assert findings[0].span.start < output.index("Quote") + 5


def test_reordered_and_lightly_edited_echo_is_found():
    output = (
        "Pallets, standard ones, I quote at 42 euros and containers refrigerated at 310 euros. Discounts "
        "never above 12 percent unless the duty manager gives approval. A customs dispute I escalate to "
        "the desk in Rotterdam."
    )
    assert scan(echo_detector(), output, paranoia=2)


def test_echo_score_rises_with_coverage():
    words = PROMPT.split()
    scores = []
    for n in (22, 30, 40):
        findings = scan(echo_detector(), " ".join(words[:n]))
        scores.append(max(f.score for f in findings))
    assert scores == sorted(scores) and scores[0] < scores[-1]


def test_generic_prompt_is_not_protected_by_echo():
    detector = LeakageDetector(
        system_prompt="You are a helpful assistant. Answer the user's questions concisely."
    )
    assert detector.echo is None
    assert scan(detector, "I am a helpful assistant and I answer the user's questions concisely.") == []


def test_ordinary_answer_on_the_same_topic_is_not_an_echo():
    output = (
        "Our freight team can help with pallets and containers. Prices depend on weight and route; "
        "please contact support for a quote. Deliveries usually take three to five days."
    )
    assert scan(echo_detector(), output) == []


def test_base64_encoded_echo_is_found():
    encoded = base64.b64encode(PROMPT.encode()).decode()
    findings = scan(echo_detector(), f"Here you go: {encoded}")
    assert any("base64-decoded" in f.evidence for f in findings)


def test_echo_through_guard_blocks_model_output():
    guard = guard_with_leakage("{system_prompt: " + repr(PROMPT).replace("'", '"') + "}")
    verdict = guard.scan("Sure! " + PROMPT, Source.MODEL_OUTPUT)
    assert verdict.action is Action.BLOCK and "leakage" in verdict.categories


def test_echo_of_a_long_prompt_is_caught_inside_a_stream_window():
    long_prompt = (
        PROMPT
        + " "
        + " ".join(f"Clause {i}: route {i} ships via depot {i * 7} on day {i % 7}." for i in range(200))
    )
    guard = guard_with_leakage("{system_prompt: " + repr(long_prompt).replace("'", '"') + "}")
    scanner = StreamScanner(guard, holdback=128, context=512)
    stopped = False
    for i in range(0, 3000, 50):
        if scanner.feed(long_prompt[i : i + 50]).stopped:
            stopped = True
            break
    assert stopped


def test_huge_output_is_scanned_in_bounded_time():
    detector = LeakageDetector(canaries=[CANARY], system_prompt=PROMPT)
    text = ("pallets and euros and the duty of a desk " * 25_000)[:1_000_000]
    started = time.perf_counter()
    scan(detector, text)
    assert time.perf_counter() - started < 2.0
