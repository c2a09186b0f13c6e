"""Secrets detector: every rule's examples, masking, exact spans, hard negatives, bounded time."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
import zlib
from pathlib import Path

import pytest

from vallum.core.detector import create_detector
from vallum.core.types import Source
from vallum.detectors.entropy import is_hex_digest, is_uuid, shannon_entropy
from vallum.detectors.secret_checks import Check, github_crc32, jwt
from vallum.detectors.secret_rules import SecretRule, load_secret_rules
from vallum.detectors.secrets import SecretsDetector, mask
from vallum.errors import DetectorError
from vallum.text.normalize import normalize

RULES = load_secret_rules().rules
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def detector() -> SecretsDetector:
    return SecretsDetector()


def _github_token(body: str = "Q3kT9vB2nQ7xL1mR8sW3yZ6cF0hJdA") -> str:
    crc, digits = zlib.crc32(body.encode()), ""
    while crc:
        crc, r = divmod(crc, 62)
        digits = BASE62[r] + digits
    return "ghp_" + body + digits.rjust(6, "0")


@pytest.mark.parametrize(
    ("rule", "example"), [(r, e) for r in RULES for e in r.examples], ids=lambda x: getattr(x, "id", "")
)
def test_rule_finds_its_examples(detector: SecretsDetector, rule: SecretRule, example: str) -> None:
    findings = [f for f in detector.find(example, rule.paranoia) if f.rule_id == rule.id]
    assert findings, f"{rule.id} missed {example!r}"


@pytest.mark.parametrize(
    ("rule", "counter"),
    [(r, c) for r in RULES for c in r.counter_examples],
    ids=lambda x: getattr(x, "id", ""),
)
def test_rule_ignores_its_counter_examples(detector: SecretsDetector, rule: SecretRule, counter: str) -> None:
    assert not [f for f in detector.find(counter, 1) if f.rule_id == rule.id]


def test_every_rule_has_an_example() -> None:
    assert [r.id for r in RULES if not r.examples] == []


def test_detector_is_registered_under_its_name() -> None:
    assert isinstance(create_detector("secrets"), SecretsDetector)


def test_detect_matches_on_the_original_text_not_the_lower_cased_view(detector: SecretsDetector) -> None:
    text = "deploy with AKIAQ3EGRBTX7KW5N2JD please"
    findings = detector.detect(normalize(text), Source.MODEL_OUTPUT, 1)
    assert [(f.category, f.subtype) for f in findings] == [("secrets", "aws_access_key_id")]


def test_span_covers_exactly_the_secret_value(detector: SecretsDetector) -> None:
    token = _github_token()
    text = f'headers = {{"Authorization": "token {token}"}}'
    (finding,) = detector.find(text)
    assert finding.span is not None
    assert text[finding.span.start : finding.span.end] == token


def test_span_is_in_characters_after_non_ascii_text(detector: SecretsDetector) -> None:
    password = "Zq8vN2kT9wL4pR7s"
    text = f"Привет 🙂 — voilà: postgres://app:{password}@db.internal/app"
    (finding,) = detector.find(text)
    assert finding.span is not None
    assert text[finding.span.start : finding.span.end] == password


def test_database_url_span_is_the_password_only(detector: SecretsDetector) -> None:
    text = "DATABASE_URL=mysql://svc:Tr0ub4dor3x@10.0.0.7:3306/main"
    (finding,) = detector.find(text)
    assert finding.span is not None
    assert text[finding.span.start : finding.span.end] == "Tr0ub4dor3x"
    assert finding.subtype == "database_url_password"


@pytest.mark.parametrize(
    "secret",
    [
        _github_token(),
        "sk_live_ReTllpYQYfIZu2Jnf2lAPFjD",
        "Zq8#vN2!kT9$wL4p",
        "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",
    ],
)
def test_evidence_never_contains_the_secret(detector: SecretsDetector, secret: str) -> None:
    (finding,) = detector.find(f'client_secret = "{secret}"')
    assert secret not in finding.evidence
    assert secret[len(secret) // 2 :] not in finding.evidence
    assert f"({len(secret)} chars)" in finding.evidence


def test_mask_shows_at_most_a_quarter_of_a_short_value() -> None:
    assert mask("hunter2!") == "hu… (8 chars)"
    assert mask("abc") == "… (3 chars)"


def test_valid_github_checksum_scores_higher_than_a_broken_one(detector: SecretsDetector) -> None:
    valid = _github_token()
    broken = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    (good,) = detector.find(valid)
    (bad,) = detector.find(broken)
    assert good.score > bad.score


def test_github_crc32_validator() -> None:
    assert github_crc32(_github_token()) is Check.VALID
    assert github_crc32("ghp_" + "a1B2c3D4e5" * 3 + "zzzzzz") is Check.UNVERIFIED


def test_jwt_validator_needs_json_header_with_alg() -> None:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    payload = b64(b'{"sub":"42"}')
    with_alg, without_alg, not_json = b64(b'{"alg":"HS256"}'), b64(b'{"typ":"JWT"}'), b64(b"not json")
    assert jwt(f"{with_alg}.{payload}.c2ln") is Check.VALID
    assert jwt(f"{without_alg}.{payload}.c2ln") is Check.INVALID
    assert jwt(f"{not_json}.{payload}") is Check.INVALID


def _hard_negatives() -> list[str]:
    sha1 = hashlib.sha1(b"vallum").hexdigest()
    sha256 = hashlib.sha256(b"vallum").hexdigest()
    png = base64.b64encode(hashlib.sha512(b"pixels").digest() * 8).decode()
    return [
        f"request_id = '{uuid.UUID(int=0x123456789ABCDEF0123456789ABCDEF)}'",
        f"Fixed in commit {sha1}, the key rotation bug.",
        f'checksum = "{sha256}"  # sha256 of the release tarball',
        f"token: {sha256}",
        f'<img alt="logo key" src="data:image/png;base64,{png}">',
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
        'api_key = "<your-api-key>"',
        'password = "changeme"',
        "SECRET_KEY = os.environ['SECRET_KEY']",
        'token = "xxxxxxxxxxxxxxxxxxxxxxxx"',
        "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX",
        "password_reset_token_lifetime = 3600",
        "def get_token(self, key: str) -> str:",
    ]


@pytest.mark.parametrize("text", _hard_negatives())
def test_hard_negative_is_not_a_secret(detector: SecretsDetector, text: str) -> None:
    assert detector.find(text, 1) == []


def test_placeholder_in_a_real_format_is_reported_weakly_only_at_high_paranoia(
    detector: SecretsDetector,
) -> None:
    text = "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX"
    assert detector.find(text, 2) == []
    (finding,) = detector.find(text, 3)
    assert finding.score < 0.5


def test_paranoia_gates_aggressive_rules(detector: SecretsDetector) -> None:
    text = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
    assert detector.find(text, 1) == []
    assert [f.rule_id for f in detector.find(text, 2)] == ["VAL-SEC-0207"]


def test_overlapping_rules_report_one_finding(detector: SecretsDetector) -> None:
    findings = detector.find('OPENAI_API_KEY = "sk-proj-Xi8tdMjHV6pmbBbwilTeT3BlbkFJ3UDnpdEwNNm6wVBpYM0o"')
    assert [f.rule_id for f in findings] == ["VAL-SEC-0301"]


def test_findings_are_capped(detector: SecretsDetector) -> None:
    capped = SecretsDetector(max_findings=3)
    text = "\n".join(f"key{i}: AKIAQ3EGRBTX7KW5N2J{chr(65 + i)}" for i in range(10))
    assert len(detector.find(text)) == 10
    assert len(capped.find(text)) == 3


@pytest.mark.parametrize(
    "text",
    [
        ("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkrLw" * 22_000)[:1_000_000],
        ("ghp_" + "a1B2c3D4e5" * 3 + " password = 'abc' key=" + "Zz9" * 5 + "\n") * 15_000,
        "-----BEGIN RSA PRIVATE KEY-----\n" * 31_000,
        "postgres://u:" * 80_000,
        "eyJhbGciOiJIUzI1NiJ9." * 50_000,
    ],
    ids=["base64-line", "near-misses", "pem-headers", "url-prefixes", "jwt-prefixes"],
)
def test_pathological_megabyte_completes_quickly(detector: SecretsDetector, text: str) -> None:
    started = time.perf_counter()
    detector.find(text, 4)
    assert time.perf_counter() - started < 5.0


def test_value_shapes() -> None:
    assert is_uuid("123e4567-e89b-12d3-a456-426614174000")
    assert is_hex_digest(hashlib.sha1(b"x").hexdigest())
    assert not is_hex_digest("9f2a3c7e1b8d4f6a0c5e9b2d7f1a4c8e")  # 32 hex: could be an API key
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


def test_bad_rule_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nrules:\n  - {id: VAL-SEC-0001, description: d, provider: p, subtype: s, "
        "severity: error, pattern: 'a(', examples: [a]}\n"
    )
    with pytest.raises(DetectorError, match="not valid RE2 syntax"):
        SecretsDetector(rule_file=path)
