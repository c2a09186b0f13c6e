"""Alerts: rules evaluated over the event stream, fired at most once per dedupe period, sent to webhooks.

`AlertEvaluator` is the pure part: threshold windows and deduplication run on the events' own timestamps,
so replaying stored events (`vallum alerts test`) gives the alerts the live gateway would have sent.
`Alerter` runs it on a background thread behind a bounded queue and hands what fires to the webhook
dispatcher, so `emit` never waits. Alerts carry ids, categories, identity fields and counts, never text.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from vallum.errors import InputError
from vallum.monitor.alert_rules import AlertRule, AlertRuleError, RiskView, RuleSet, as_risk, load_ruleset
from vallum.monitor.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

_SWEEP_EVERY = 4096  # observations between sweeps of idle windows and expired dedupe entries
GroupKey = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Alert:
    rule_id: str
    severity: str
    description: str
    time: float  # when it fired, on the events' clock (epoch seconds)
    identity: Mapping[str, str | None]  # the fields the rule groups by, as the events carried them
    event_ids: tuple[str, ...]
    window_s: float | None
    categories: tuple[str, ...]
    risk_score: float | None
    risk_level: str | None
    channels: tuple[str, ...]

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.time, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def who(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.identity.items() if v is not None) or "all identities"

    def summary(self) -> str:
        n = len(self.event_ids)
        text = f"{n} matching event{'' if n == 1 else 's'}"
        if self.window_s is not None:
            text += f" within {self.window_s:g}s"
        text += f" from {self.who()}"
        if self.categories:
            text += f"; categories: {', '.join(self.categories)}"
        if self.risk_score is not None:
            text += f"; risk {self.risk_score:.2f} ({self.risk_level})"
        return f"{self.description}: {text}" if self.description else text


@dataclass(slots=True)
class RuleStats:
    matched: int = 0  # events that met the rule's conditions
    fired: int = 0
    deduplicated: int = 0  # firings suppressed because the same rule and group fired within dedupe_s


@dataclass(frozen=True, slots=True)
class _Hit:
    time: float
    event_id: str
    categories: tuple[str, ...]


class AlertEvaluator:
    """Which rules fire on each event, with threshold windows and deduplication per rule and group."""

    def __init__(self, rules: Sequence[AlertRule], clock: Callable[[], float] = time.time) -> None:
        self.rules = tuple(rules)
        self.stats = {r.id: RuleStats() for r in self.rules}
        self._by_id = {r.id: r for r in self.rules}
        self._clock = clock  # for events without a timestamp of their own
        # A window only needs the rule's last `count` hits: the threshold holds when the oldest of them is
        # recent enough, so each deque is bounded by its rule's count.
        self._windows: dict[tuple[str, GroupKey], deque[_Hit]] = {}
        self._last_fired: dict[tuple[str, GroupKey], float] = {}
        self._observed = 0

    def observe(self, event: Mapping[str, Any], risk: object = None) -> list[Alert]:
        """Alerts that fire on this event; `risk` defaults to the event's own "risk" entry, if any."""
        view = as_risk(risk if risk is not None else event.get("risk"))
        stamp = event.get("time")
        now = (
            float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else self._clock()
        )
        identity = event.get("identity")
        if not isinstance(identity, Mapping):
            identity = {}
        fired: list[Alert] = []
        for rule in self.rules:
            if not rule.matches(event, view):
                continue
            stats = self.stats[rule.id]
            stats.matched += 1
            group = tuple(identity.get(f) for f in rule.group_by)
            key = (rule.id, group)
            hit = _Hit(now, str(event.get("id", "")), _categories(event))
            hits: tuple[_Hit, ...] = (hit,)
            if rule.threshold is not None:
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = deque(maxlen=rule.threshold.count)
                window.append(hit)
                if len(window) < rule.threshold.count or now - window[0].time > rule.threshold.window_s:
                    continue
                hits = tuple(window)
            last = self._last_fired.get(key)
            if last is not None and now - last < rule.dedupe_s:
                stats.deduplicated += 1
                continue
            self._last_fired[key] = now
            stats.fired += 1
            fired.append(_alert(rule, dict(zip(rule.group_by, group, strict=True)), hits, now, view))
        self._observed += 1
        if self._observed % _SWEEP_EVERY == 0:
            self._sweep(now)
        return fired

    def _sweep(self, now: float) -> None:
        """Forget windows and dedupe entries that can no longer change an outcome (bounded memory)."""
        for key, window in list(self._windows.items()):
            threshold = self._by_id[key[0]].threshold
            if threshold is None or now - window[-1].time > threshold.window_s:
                del self._windows[key]
        for key, last in list(self._last_fired.items()):
            if now - last >= self._by_id[key[0]].dedupe_s:
                del self._last_fired[key]


def _categories(event: Mapping[str, Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for stage in ("input", "output"):
        record = event.get(stage)
        if isinstance(record, Mapping):
            seen.update(dict.fromkeys(c for c in record.get("categories") or () if isinstance(c, str)))
    return tuple(seen)


def _alert(
    rule: AlertRule,
    identity: dict[str, str | None],
    hits: tuple[_Hit, ...],
    now: float,
    risk: RiskView | None,
) -> Alert:
    categories: dict[str, None] = {}
    for h in hits:
        categories.update(dict.fromkeys(h.categories))
    return Alert(
        rule_id=rule.id,
        severity=rule.severity,
        description=rule.description,
        time=now,
        identity=identity,
        event_ids=tuple(h.event_id for h in hits),
        window_s=rule.threshold.window_s if rule.threshold else None,
        categories=tuple(categories),
        risk_score=risk.score if risk and rule.risk else None,
        risk_level=risk.level if risk and rule.risk else None,
        channels=rule.channels,
    )


class Alerter:
    """Alert rules over the gateway's events, off the request path.

    Shaped like the gateway's EventSink (`emit`, `close`, `dropped`); `emit` also takes the identity's risk
    assessment when the caller has one. Events that find the queue full are dropped and counted.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        env: Mapping[str, str] | None = None,
        queue_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        dispatcher: WebhookDispatcher | None = None,
    ) -> None:
        defined = {c.name for c in ruleset.channels or ()}
        for rule in ruleset.rules:
            missing = [c for c in rule.channels if c not in defined]
            if missing:
                raise AlertRuleError(
                    f"alert rule {rule.id!r} delivers to undefined channel(s) {', '.join(missing)}"
                )
        self.evaluator = AlertEvaluator(ruleset.rules, clock)
        self.dispatcher = dispatcher or WebhookDispatcher(
            ruleset.channels or (), env=os.environ if env is None else env
        )
        self.dropped = 0
        self._queue: queue.Queue[tuple[dict[str, Any], object] | None] = queue.Queue(
            maxsize=queue_size
        )  # None: stop
        self._thread = threading.Thread(target=self._loop, name="vallum-alerts", daemon=True)
        self._thread.start()

    def emit(self, event: dict[str, Any], risk: object = None) -> None:
        try:
            self._queue.put_nowait((event, risk))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Evaluate what is queued, deliver what fired (within each channel's timeout and retries), stop."""
        self._queue.put(None)
        self._thread.join()
        self.dispatcher.close()

    def counters(self) -> dict[str, int]:
        stats = self.evaluator.stats.values()
        return {
            "events_dropped": self.dropped,
            "fired": sum(s.fired for s in stats),
            "deduplicated": sum(s.deduplicated for s in stats),
            **self.dispatcher.counters(),
        }

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, risk = item
            try:
                alerts = self.evaluator.observe(event, risk)
            except Exception:  # one malformed event must not stop alerting for the rest of the process
                log.exception(
                    "alert rules failed on event %s", event.get("id") if isinstance(event, dict) else "?"
                )
                continue
            for alert in alerts:
                self.dispatcher.submit(alert)


def read_events_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a JSON-lines file, such as the gateway's events file; blank lines are skipped."""
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
                if not isinstance(event, dict):
                    raise InputError(f"{path}:{number}: expected a JSON object (one event per line)")
                yield event
    except OSError as exc:
        raise InputError(f"cannot read events {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def run_alert_test(rules_file: Path, events: Iterable[dict[str, Any]], out: TextIO | None = None) -> int:
    """`vallum alerts test`: which rules fire on these events, with windows and dedupe; nothing is sent.

    Exit status 0 after a report, 2 when the rules file or the events cannot be read (the message names
    the rule and field, or the line).
    """
    out = out or sys.stdout
    try:
        ruleset = load_ruleset(rules_file)
    except AlertRuleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evaluator = AlertEvaluator(ruleset.rules)
    count = 0
    try:
        for event in events:
            count += 1
            for alert in evaluator.observe(event):
                ids = ", ".join(alert.event_ids[-5:])
                more = f" (+{len(alert.event_ids) - 5} earlier)" if len(alert.event_ids) > 5 else ""
                print(
                    f"{alert.iso_time}  {alert.rule_id}  {alert.severity}  {alert.who()}  "
                    f"{len(alert.event_ids)} event(s): {ids}{more}",
                    file=out,
                )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width = max([len("rule"), *(len(r.id) for r in ruleset.rules)])
    print(f"\n{'rule':<{width}}  {'matched':>8}  {'fired':>6}  {'deduplicated':>12}", file=out)
    for rule_id, s in evaluator.stats.items():
        print(f"{rule_id:<{width}}  {s.matched:>8}  {s.fired:>6}  {s.deduplicated:>12}", file=out)
    print(f"{count} event(s) read, {len(ruleset.rules)} rule(s); nothing was delivered", file=out)
    return 0
