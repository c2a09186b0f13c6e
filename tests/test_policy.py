import pytest

from vallum import Action, Policy, PolicyError, Source


def test_default_policy_blocks_injection_at_half():
    policy = Policy()
    rule = policy.category_rule("injection", Source.USER)
    assert rule.act_at == 0.5
    assert rule.action is Action.BLOCK


def test_source_override_inherits_unset_fields():
    policy = Policy.from_yaml(
        """
categories:
  injection: {flag_at: 0.3, act_at: 0.6, action: block}
sources:
  retrieval:
    categories:
      injection: {action: redact}
"""
    )
    rule = policy.category_rule("injection", Source.RETRIEVAL)
    assert rule.action is Action.REDACT
    assert rule.act_at == 0.6
    assert policy.category_rule("injection", Source.USER).action is Action.BLOCK


def test_unknown_key_error_names_key_and_line():
    text = "version: v1\nparanoia: 2\ncategories:\n  injection:\n    act_at: 0.5\n    blok_at: 0.9\n"
    with pytest.raises(PolicyError) as err:
        Policy.from_yaml(text, filename="p.yaml")
    message = str(err.value)
    assert "p.yaml" in message
    assert "categories.injection.blok_at" in message
    assert "line 6" in message
    assert "unknown key" in message


def test_wrong_type_error_names_key_and_line():
    with pytest.raises(PolicyError) as err:
        Policy.from_yaml("version: v1\nparanoia: seven\n")
    assert "paranoia" in str(err.value)
    assert "line 2" in str(err.value)


def test_flag_threshold_above_act_threshold_is_rejected():
    with pytest.raises(PolicyError, match="flag_at"):
        Policy.from_yaml("categories:\n  injection: {flag_at: 0.9, act_at: 0.5}\n")


def test_invalid_yaml_is_a_policy_error():
    with pytest.raises(PolicyError, match="not valid YAML"):
        Policy.from_yaml("categories: [unclosed\n")


def test_per_source_paranoia_overrides_global():
    policy = Policy.from_yaml("paranoia: 1\nsources:\n  tool_result: {paranoia: 3}\n")
    assert policy.paranoia_for(Source.TOOL_RESULT) == 3
    assert policy.paranoia_for(Source.USER) == 1


def test_policy_label_changes_with_content_not_only_version():
    a = Policy.from_yaml("version: v1\nparanoia: 1\n")
    b = Policy.from_yaml("version: v1\nparanoia: 2\n")
    assert a.version == b.version
    assert a.label != b.label


def test_missing_policy_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.from_file(tmp_path / "absent.yaml")


def test_example_policy_in_the_repository_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"
    policy = Policy.from_file(example)
    assert policy.version == "example-1"
    assert not policy.source_enabled(Source.SYSTEM)
    assert policy.category_rule("injection", Source.RETRIEVAL).action is Action.REDACT
