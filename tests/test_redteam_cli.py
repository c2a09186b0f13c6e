"""`vallum redteam` as the main command will wire it: configure() adds the options, args.run runs them."""

import argparse
import json

import pytest

from tests.loopback import serve_in_thread
from tests.redteam_env import vulnerable_script
from vallum.redteam import RedTeamError, configure, run_redteam
from vallum.upstream_sim import create_app


def parse(argv):
    parser = argparse.ArgumentParser(prog="vallum")
    commands = parser.add_subparsers(dest="command", required=True)
    configure(commands.add_parser("redteam"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def sim_url():
    with serve_in_thread(create_app(vulnerable_script())) as url:
        yield url


def test_command_line_runs_a_campaign_and_writes_every_report(sim_url, tmp_path, capsys):
    argv = ["redteam", "--target", sim_url, "--model", "sim-echo", "--suite", "prompt-extraction"]
    argv += [
        "--suite",
        "exfiltration",
        "--budget",
        "12",
        "--seed",
        "4",
        "--report",
        str(tmp_path),
        "--no-progress",
    ]
    args = parse(argv)
    assert args.run(args) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names >= {"report.html", "report.json", "report.sarif", "junit.xml", "successful-attacks.jsonl"}
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["attempts"]) == 12 and report["seed"] == 4
    out = capsys.readouterr().out
    assert "LLM07     System Prompt Leakage" in out and "attack success rate" in out


def test_extra_mutators_and_fail_above(sim_url, tmp_path):
    args = parse(
        [
            "redteam",
            "--target",
            sim_url,
            "--suite",
            "direct-injection",
            "--plain",
            "--mutators",
            "base64",
            "--mutators",
            "leetspeak+spacing",
            "--fail-above",
            "0.05",
            "--report",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert args.run(args) == 1
    cases = {a["case_id"] for a in json.loads((tmp_path / "report.json").read_text())["attempts"]}
    assert {"VRT-1001", "VRT-1001~base64", "VRT-1001~leetspeak+spacing"} <= cases


def test_list_shows_suites_attacks_and_mutators(capsys):
    args = parse(["redteam", "--list"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "prompt-extraction:" in out and "VRT-3001  LLM07" in out and "translate:es" in out


def test_a_missing_target_is_explained():
    with pytest.raises(RedTeamError, match="give --target URL"):
        run_redteam(None)
    with pytest.raises(RedTeamError, match="between 0 and 1"):
        run_redteam("http://x", fail_above=5)
