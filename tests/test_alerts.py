"""Alerts: rule conditions, threshold windows, deduplication, rate limits, real webhook delivery, the CLI."""

from __future__ import annotations

import copy
import io
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.loopback import serve_in_thread
from vallum.gateway.events import JsonlSink
from vallum.monitor.alert_rules import AlertRuleError, load_ruleset, parse_ruleset
from vallum.monitor.alerts import Alerter, AlertEvaluator, read_events_jsonl, run_alert_test
from vallum.monitor.webhooks import TokenBucket, WebhookDispatcher

EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "examples" / "alerts.yaml"
SECRET_TEXT = "my password is hunter2"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Risk:
    """The shape of the analytics' risk assessment: what alert rules read of it."""

    score: float
    level: str
    features: dict[str, float] = field(default_factory=dict)


def event(number: int = 0, **changes: Any) -> dict[str, Any]:
    """A blocked injection attempt, as the gateway writes it; `changes` replace top-level fields."""
    base: dict[str, Any] = {
        "id": f"ev{number:04d}",
        "api": "openai",
        "route": "chat/completions",
        "model": "gpt-4o",
        "upstream": "openai",
        "identity": {"tenant": "acme", "user": "alice", "api_key": "team-a", "ip": "127.0.0.1"},
        "stream": False,
        "shadow": False,
        "status": 400,
        "code": "input_blocked",
        "policy_version": "default@52fffbb37359",
        "input": {
            "action": "block",
            "categories": ["injection"],
            "scores": {"injection": 0.93},
            "findings": [
                {
                    "detector": "injection_signatures",
                    "category": "injection",
                    "subtype": "ignore_previous",
                    "rule_id": "VAL-INJ-0001",
                    "severity": "error",
                    "score": 0.93,
                    "span": [0, 20],
                    "where": "messages[0].content",
                }
            ],
            "guard_ms": 1.8,
            "texts": [{"where": "messages[0].content", "text": SECRET_TEXT}],
        },
        "output": {"action": "allow", "categories": [], "scores": {}, "findings": [], "guard_ms": 0.0},
        "tokens": 15,
        "latency_ms": {"guard": 1.8, "upstream": 0.0, "total": 2.1},
    }
    base.update(changes)
    return base


def with_identity(number: int, **identity: str | None) -> dict[str, Any]:
    e = event(number)
    e["identity"] = {**e["identity"], **identity}
    return e


def evaluator(*rules: dict[str, Any], clock: Clock | None = None) -> AlertEvaluator:
    return AlertEvaluator(parse_ruleset(list(rules)).rules, clock or Clock())


def fires(rule: dict[str, Any], e: dict[str, Any], risk: object = None) -> bool:
    return bool(evaluator({"id": "R", **rule}).observe(e, risk))


# --- conditions over one event ----------------------------------------------------------------------------


def test_action_and_category_must_hold_in_the_same_stage() -> None:
    e = event()
    e["output"] = {"action": "flag", "categories": ["pii"], "findings": []}
    assert fires({"match": {"action": "block", "categories": ["injection"]}}, e)
    assert fires({"match": {"action": ["flag"], "categories": "pii"}}, e)
    assert not fires({"match": {"action": "block", "categories": ["pii"]}}, e)  # block was input, pii output
    assert not fires({"match": {"stage": "output", "action": "block"}}, e)


def test_subtypes_and_rule_ids_match_the_findings() -> None:
    assert fires({"match": {"subtypes": ["ignore_previous", "dan"]}}, event())
    assert fires({"match": {"rule_ids": "VAL-INJ-0001"}}, event())
    assert not fires({"match": {"rule_ids": ["VAL-SEC-0001"]}}, event())
    assert not fires({"match": {"stage": "output", "subtypes": ["ignore_previous"]}}, event())


def test_request_fields_identity_and_shadow_match_exactly() -> None:
    e = event()
    assert fires({"match": {"code": "input_blocked", "route": "chat/completions", "model": ["gpt-4o"]}}, e)
    assert fires({"match": {"api": "openai", "upstream": "openai", "shadow": False}}, e)
    assert fires({"match": {"identity": {"tenant": "acme", "user": ["alice", "bob"]}}}, e)
    assert not fires({"match": {"identity": {"user": "bob"}}}, e)
    assert not fires({"match": {"shadow": True}}, e)
    assert not fires({"match": {"model": "claude-3"}}, e)


def test_numeric_comparisons_read_dotted_paths_and_fail_on_missing_values() -> None:
    assert fires({"match": {"where": "input.scores.injection >= 0.9"}}, event())
    assert fires({"match": {"where": ["tokens > 10", "latency_ms.total < 5"]}}, event())
    assert not fires({"match": {"where": ["input.scores.injection >= 0.95"]}}, event())
    assert not fires({"match": {"where": ["input.scores.pii >= 0"]}}, event())  # absent: never true
    assert not fires({"match": {"where": ["model > 1"]}}, event())  # a string is not a number


def test_risk_conditions_read_a_risk_object_or_a_dict() -> None:
    rule = {"risk": {"min_level": "elevated", "min_score": 0.5, "features": ["blocked_burst >= 3"]}}
    assert fires(rule, event(), Risk(0.8, "high", {"blocked_burst": 4.0}))
    assert fires(rule, event(), {"score": 0.6, "level": "elevated", "features": {"blocked_burst": 3}})
    assert not fires(rule, event(), Risk(0.8, "high", {"blocked_burst": 1.0}))
    assert not fires(rule, event(), Risk(0.4, "high", {"blocked_burst": 4.0}))
    assert not fires(rule, event(), Risk(0.9, "none", {"blocked_burst": 4.0}))


def test_a_risk_rule_never_fires_without_an_assessment_but_reads_one_stored_in_the_event() -> None:
    rule = {"match": {"action": "block"}, "risk": {"min_level": "high"}}
    assert not fires(rule, event())
    assert fires(rule, event(risk={"score": 0.95, "level": "high", "features": {}}))


# --- windows and deduplication ----------------------------------------------------------------------------


def test_a_threshold_fires_on_the_nth_matching_event_within_the_window() -> None:
    clock = Clock()
    ev = evaluator(
        {"id": "BURST", "match": {"action": "block"}, "threshold": {"count": 3, "window_s": 60}}, clock=clock
    )
    untimed = [{k: v for k, v in event(i).items() if k != "time"} for i in range(3)]
    assert ev.observe(untimed[0]) == []
    clock.now += 20
    assert ev.observe(untimed[1]) == []
    clock.now += 20
    [alert] = ev.observe(untimed[2])
    assert alert.rule_id == "BURST" and alert.event_ids == ("ev0000", "ev0001", "ev0002")
    assert alert.time == clock.now and alert.window_s == 60
    assert alert.identity == {"tenant": "acme", "user": "alice", "api_key": "team-a", "ip": "127.0.0.1"}


def test_a_threshold_ignores_matches_older_than_the_window() -> None:
    clock = Clock()
    ev = evaluator(
        {"id": "BURST", "match": {"action": "block"}, "threshold": {"count": 3, "window_s": 60}}, clock=clock
    )
    fired = []
    for i in range(6):  # one every 31 s: never three within 60 s
        fired += ev.observe(event(i, time=clock.now + 31 * i))
    assert fired == []
    assert ev.stats["BURST"].matched == 6


def test_a_threshold_counts_each_identity_on_its_own() -> None:
    ev = evaluator({"id": "BURST", "match": {"action": "block"}, "threshold": {"count": 2, "window_s": 60}})
    assert ev.observe(with_identity(0, user="alice") | {"time": 100.0}) == []
    assert ev.observe(with_identity(1, user="bob") | {"time": 101.0}) == []
    [alert] = ev.observe(with_identity(2, user="bob") | {"time": 102.0})
    assert alert.identity["user"] == "bob" and alert.event_ids == ("ev0001", "ev0002")


def test_the_same_rule_and_identity_alert_once_per_dedupe_period() -> None:
    ev = evaluator({"id": "ONE", "match": {"action": "block"}, "dedupe_s": 300})
    times = [0, 10, 299, 300, 301]
    fired = [bool(ev.observe(event(i, time=1000.0 + t))) for i, t in enumerate(times)]
    assert fired == [True, False, False, True, False]
    assert ev.stats["ONE"].fired == 2 and ev.stats["ONE"].deduplicated == 3
    assert ev.observe(with_identity(9, user="bob") | {"time": 1302.0})  # another identity is another alert


def test_group_by_decides_what_counts_as_the_same_identity() -> None:
    ev = evaluator({"id": "TENANT", "match": {"action": "block"}, "group_by": ["tenant"], "dedupe_s": 60})
    [alert] = ev.observe(with_identity(0, user="alice") | {"time": 0.0})
    assert alert.identity == {"tenant": "acme"}
    assert ev.observe(with_identity(1, user="bob") | {"time": 1.0}) == []  # same tenant: deduplicated
    assert ev.observe(with_identity(2, tenant="other") | {"time": 2.0})


# --- rules files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"id": "A", "match": {"action": "blok"}}], "rules[0] (id 'A').match.action"),
        (
            [{"id": "A", "match": {"where": ["input.scores.injection ~ 0.9"]}}],
            "rules[0] (id 'A').match.where[0]",
        ),
        ([{"id": "A", "match": {"where": ["tokens > many"]}}], "'many' is not a number"),
        (
            [{"id": "A", "match": {"code": "x"}}, {"id": "B"}],
            "rules[1] (id 'B'): give `match:` and/or `risk:`",
        ),
        ([{"id": "A", "risk": {"min_level": "severe"}}], "rules[0] (id 'A').risk.min_level"),
        ([{"id": "A", "match": {"code": "x"}, "threshold": {"count": 0, "window_s": 5}}], "threshold.count"),
        ([{"id": "A", "match": {"code": "x"}, "group_by": ["usr"]}], "rules[0] (id 'A').group_by[0]"),
        ([{"id": "A", "match": {"colour": "red"}}], "rules[0] (id 'A').match.colour"),
        ([{"id": "A", "match": {"code": "x"}}, {"id": "A", "match": {"code": "y"}}], "duplicate rule id 'A'"),
        (
            {"rules": [{"id": "A", "match": {"code": "x"}, "channels": "pager"}], "channels": []},
            "rule 'A' delivers to undefined channel(s) pager",
        ),
        ({"rules": [], "channels": [{"name": "c", "kind": "json"}]}, "channels[0]: give exactly one of url"),
    ],
)
def test_invalid_rules_are_rejected_naming_the_rule_and_field(rules: object, message: str) -> None:
    with pytest.raises(AlertRuleError) as info:
        parse_ruleset(rules, "rules.yaml")
    assert message in str(info.value)


def test_the_example_rules_file_is_valid() -> None:
    ruleset = load_ruleset(EXAMPLE_RULES)
    assert {r.id for r in ruleset.rules} >= {"ALERT-INJ-BURST", "ALERT-SECRET-OUT", "ALERT-RISK-HIGH"}
    assert ruleset.channels is not None and {c.kind for c in ruleset.channels} == {"slack", "json"}


def test_a_channel_whose_secret_variable_is_unset_is_an_error_naming_the_variable() -> None:
    ruleset = parse_ruleset(
        {"rules": [], "channels": [{"name": "s", "kind": "slack", "url_env": "NO_SUCH_VAR"}]}
    )
    with pytest.raises(AlertRuleError, match="channel 's': environment variable NO_SUCH_VAR"):
        Alerter(ruleset, env={})


# --- delivery ---------------------------------------------------------------------------------------------


def test_a_token_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=6, burst=2, clock=clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 5  # half a token
    assert not bucket.take()
    clock.now += 5
    assert bucket.take() and not bucket.take()
    clock.now += 3600  # never more than the burst after a long quiet spell
    assert [bucket.take() for _ in range(3)] == [True, True, False]


class Recorder:
    """A webhook receiver on loopback that records every POST and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []

        async def hook(request: Request) -> Response:
            self.received.append(
                {"path": request.url.path, "headers": dict(request.headers), "body": await request.json()}
            )
            return Response("ok", status_code=self.status)

        self.app = Starlette(routes=[Route("/{name}", hook, methods=["POST"])])


def deliver(hooks: list[dict[str, Any]], events: list[dict[str, Any]], **rule: Any) -> Alerter:
    """Run `events` through one rule (fields `rule`) with channels `hooks`; close, which delivers everything."""
    ruleset = parse_ruleset(
        {
            "rules": [{"id": "ALERT-T", "severity": "high", "match": {"action": "block"}, **rule}],
            "channels": hooks,
        }
    )
    dispatcher = WebhookDispatcher(ruleset.channels or (), env={"TOKEN_VAR": "s3cret"}, backoff_s=0.01)
    alerter = Alerter(ruleset, dispatcher=dispatcher)
    for e in events:
        alerter.emit(e)
    alerter.close()
    return alerter


def test_alerts_reach_slack_and_json_webhooks_without_event_text() -> None:
    recorder = Recorder()
    with serve_in_thread(recorder.app) as url:
        channels: list[dict[str, Any]] = [
            {"name": "slack", "kind": "slack", "url": f"{url}/slack"},
            {
                "name": "siem",
                "kind": "json",
                "url": f"{url}/siem",
                "headers_env": {"Authorization": "TOKEN_VAR"},
            },
        ]
        events = [event(i, time=100.0 + i) for i in range(3)]
        alerter = deliver(
            channels, events, channels=["slack", "siem"], threshold={"count": 3, "window_s": 60}
        )
    by_path = {r["path"]: r for r in recorder.received}
    assert set(by_path) == {"/slack", "/siem"}
    slack = by_path["/slack"]["body"]
    assert slack["text"].startswith(
        "[HIGH] ALERT-T: 3 matching events within 60s from tenant=acme user=alice"
    )
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "section", "context"]
    siem = by_path["/siem"]
    assert siem["headers"]["authorization"] == "s3cret"
    assert siem["body"]["rule"] == "ALERT-T" and siem["body"]["severity"] == "high"
    assert siem["body"]["events"] == ["ev0000", "ev0001", "ev0002"]
    assert siem["body"]["identity"] == {
        "tenant": "acme",
        "user": "alice",
        "api_key": "team-a",
        "ip": "127.0.0.1",
    }
    assert siem["body"]["categories"] == ["injection"] and siem["body"]["time"] == "1970-01-01T00:01:42Z"
    assert set(siem["body"]) >= {"rule", "severity", "identity", "summary", "events", "time"}
    assert SECRET_TEXT not in str(recorder.received)
    assert alerter.counters() == {
        "events_dropped": 0,
        "fired": 1,
        "deduplicated": 0,
        "sent": 2,
        "failed": 0,
        "rate_limited": 0,
        "alerts_dropped": 0,
    }


def test_slack_text_escapes_identity_values() -> None:
    recorder = Recorder()
    with serve_in_thread(recorder.app) as url:
        deliver(
            [{"name": "s", "kind": "slack", "url": f"{url}/s"}],
            [with_identity(0, user="<!channel>")],
            channels="s",
        )
    assert "<!channel>" not in str(recorder.received[0]["body"])
    assert "&lt;!channel&gt;" in recorder.received[0]["body"]["text"]


def test_alerts_over_a_channels_rate_are_counted_not_sent() -> None:
    recorder = Recorder()
    with serve_in_thread(recorder.app) as url:
        channels = [{"name": "siem", "kind": "json", "url": f"{url}/siem", "per_minute": 1, "burst": 2}]
        users = [with_identity(i, user=f"user{i}") for i in range(5)]  # five identities: five alerts
        alerter = deliver(channels, users, channels=["siem"])
    assert len(recorder.received) == 2
    assert alerter.counters()["sent"] == 2 and alerter.counters()["rate_limited"] == 3


def test_a_failing_webhook_is_retried_then_counted_as_failed() -> None:
    recorder = Recorder(status=500)
    with serve_in_thread(recorder.app) as url:
        channels = [{"name": "siem", "kind": "json", "url": f"{url}/siem", "retries": 2}]
        alerter = deliver(channels, [event(0)], channels=["siem"])
    assert len(recorder.received) == 3  # the first try and two retries
    assert alerter.counters()["failed"] == 1 and alerter.counters()["sent"] == 0


def test_a_webhook_that_rejects_the_request_is_not_retried() -> None:
    recorder = Recorder(status=400)
    with serve_in_thread(recorder.app) as url:
        alerter = deliver(
            [{"name": "j", "kind": "json", "url": f"{url}/j", "retries": 3}], [event(0)], channels="j"
        )
    assert len(recorder.received) == 1 and alerter.counters()["failed"] == 1


def test_a_closed_port_counts_as_failed_and_never_raises_into_the_caller() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    channels = [{"name": "gone", "kind": "json", "url": f"http://127.0.0.1:{port}/hook", "retries": 1}]
    alerter = deliver(channels, [event(0), with_identity(1, user="bob")], channels=["gone"])
    assert alerter.counters()["failed"] == 2 and alerter.counters()["sent"] == 0


def test_emit_drops_and_counts_when_the_queue_is_full_and_every_event_is_accounted_for() -> None:
    ruleset = parse_ruleset([{"id": "ANY", "match": {"action": "block"}, "dedupe_s": 0}])
    alerter = Alerter(ruleset, env={}, queue_size=1)
    for i in range(2000):
        alerter.emit(event(i))
    alerter.close()
    assert alerter.dropped > 0
    assert alerter.dropped + alerter.evaluator.stats["ANY"].matched == 2000


# --- vallum alerts test -----------------------------------------------------------------------------------


def gateway_events_file(tmp_path: Path, events: list[dict[str, Any]]) -> Path:
    """Events written by the gateway's own JSON-lines sink, as `vallum serve` leaves them."""
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    for e in events:
        sink.emit(copy.deepcopy(e))
    sink.close()
    return path


def test_alerts_test_reports_what_fires_on_a_gateway_events_file(tmp_path: Path) -> None:
    attacks = [event(i, time=1_700_000_000.0 + i) for i in range(12)]
    benign = event(99, time=1_700_000_020.0, code=None, status=200)
    benign["input"] = {"action": "allow", "categories": [], "scores": {}, "findings": [], "guard_ms": 0.4}
    path = gateway_events_file(tmp_path, [*attacks, benign])
    out = io.StringIO()
    assert run_alert_test(EXAMPLE_RULES, read_events_jsonl(path), out) == 0
    report = out.getvalue()
    lines = [line for line in report.splitlines() if "ALERT-INJ-BURST" in line]
    assert lines[0].startswith("2023-11-14T22:13:24Z  ALERT-INJ-BURST  high  tenant=acme user=alice")
    assert "5 event(s): ev0000, ev0001, ev0002, ev0003, ev0004" in lines[0]
    assert lines[1].split() == ["ALERT-INJ-BURST", "12", "1", "7"]  # matched, fired, deduplicated
    assert "13 event(s) read" in report and "nothing was delivered" in report
    assert SECRET_TEXT not in report


def test_alerts_test_exits_2_naming_the_field_of_an_invalid_rules_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- id: X\n  match: {where: ['input.scores.injection >> 1']}\n")
    assert run_alert_test(rules, [event(0)]) == 2
    assert "rules[0] (id 'X').match.where[0]" in capsys.readouterr().err


def test_alerts_test_exits_2_naming_the_line_of_a_malformed_events_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": "a"}\n\n[1, 2]\n')
    assert run_alert_test(EXAMPLE_RULES, read_events_jsonl(path), io.StringIO()) == 2
    assert f"{path}:3: expected a JSON object" in capsys.readouterr().err
