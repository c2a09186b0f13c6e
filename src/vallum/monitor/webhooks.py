"""Alert delivery to webhooks, Slack-shaped or generic JSON: rate-limited per channel, retried, on a thread.

`submit` never blocks: an alert over its channel's rate is counted as rate_limited, one that finds the
delivery queue full as dropped. A webhook that fails (an error status, a refused connection, a timeout)
is retried with backoff, then counted as failed and logged by channel name only (a Slack webhook URL is
a secret).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from vallum.monitor.alert_rules import AlertRuleError, ChannelConfig

if TYPE_CHECKING:
    from vallum.monitor.alerts import Alert

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0
_SHOWN_IDS = 10  # event ids listed in a Slack message; the JSON payload carries them all


def json_payload(alert: Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule_id,
        "severity": alert.severity,
        "identity": dict(alert.identity),
        "summary": alert.summary(),
        "events": list(alert.event_ids),
        "count": len(alert.event_ids),
        "categories": list(alert.categories),
        "risk": None if alert.risk_score is None else {"score": alert.risk_score, "level": alert.risk_level},
        "time": alert.iso_time,
    }


def _mrkdwn(text: str) -> str:
    """Slack's escaping, so that an identity value cannot turn into a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    title = f"[{alert.severity.upper()}] {alert.rule_id}"
    ids = ", ".join(f"`{i}`" for i in alert.event_ids[-_SHOWN_IDS:])
    if len(alert.event_ids) > _SHOWN_IDS:
        ids += f" (+{len(alert.event_ids) - _SHOWN_IDS} earlier)"
    fields = [
        ("Severity", alert.severity),
        ("Identity", alert.who()),
        ("Events", str(len(alert.event_ids))),
        ("Categories", ", ".join(alert.categories) or "none"),
    ]
    return {
        "text": _mrkdwn(f"{title}: {alert.summary()}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(alert.summary())}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v)}"} for k, v in fields],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{alert.iso_time} · events {ids}"}]},
        ],
    }


class TokenBucket:
    """`burst` sends at once, refilled at `per_minute`; `take` says whether one more may go now."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class _Channel:
    config: ChannelConfig
    url: str
    headers: dict[str, str]
    bucket: TokenBucket


def _resolve(config: ChannelConfig, env: Mapping[str, str], clock: Callable[[], float]) -> _Channel:
    def secret(var: str, what: str) -> str:
        value = env.get(var)
        if not value:
            raise AlertRuleError(
                f"alert channel {config.name!r}: environment variable {var} ({what}) is not set"
            )
        return value

    url = config.url if config.url is not None else secret(str(config.url_env), "the webhook URL")
    try:
        scheme = httpx.URL(url).scheme
    except httpx.InvalidURL as exc:
        raise AlertRuleError(f"alert channel {config.name!r}: invalid webhook URL ({exc})") from None
    if scheme not in ("http", "https"):
        raise AlertRuleError(
            f"alert channel {config.name!r}: the webhook URL must start with http:// or https://"
        )
    headers = dict(config.headers)
    headers.update({h: secret(var, f"header {h}") for h, var in config.headers_env.items()})
    return _Channel(config, url, headers, TokenBucket(config.per_minute, config.burst, clock))


class WebhookDispatcher:
    def __init__(
        self,
        channels: Sequence[ChannelConfig],
        *,
        env: Mapping[str, str],
        queue_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        backoff_s: float = 0.5,
    ) -> None:
        self._channels = {c.name: _resolve(c, env, clock) for c in channels}
        self._backoff_s = backoff_s
        self.sent = 0
        self.failed = 0
        self.rate_limited = 0
        self.dropped = 0
        self._queue: queue.Queue[tuple[_Channel, Alert] | None] = queue.Queue(
            maxsize=queue_size
        )  # None: stop
        self._client = httpx.Client(follow_redirects=False)
        self._thread = threading.Thread(target=self._loop, name="vallum-webhooks", daemon=True)
        self._thread.start()

    def counters(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "rate_limited": self.rate_limited,
            "alerts_dropped": self.dropped,
        }

    def submit(self, alert: Alert) -> None:
        for name in alert.channels:
            channel = self._channels[name]
            if not channel.bucket.take():
                self.rate_limited += 1
                continue
            try:
                self._queue.put_nowait((channel, alert))
            except queue.Full:
                self.dropped += 1

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()
        self._client.close()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            channel, alert = item
            try:
                self._deliver(channel, alert)
            except Exception:  # a bug here must not stop delivery of the alerts behind this one
                self.failed += 1
                log.exception("alert %s to channel %r not delivered", alert.rule_id, channel.config.name)

    def _deliver(self, channel: _Channel, alert: Alert) -> None:
        body = slack_payload(alert) if channel.config.kind == "slack" else json_payload(alert)
        reason = ""
        for attempt in range(channel.config.retries + 1):
            if attempt:
                time.sleep(min(self._backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S))
            try:
                response = self._client.post(
                    channel.url, json=body, headers=channel.headers, timeout=channel.config.timeout_s
                )
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
                continue
            if response.is_success:
                self.sent += 1
                return
            reason = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the webhook rejects this request as it is; sending it again will not help
        self.failed += 1
        log.warning("alert %s to channel %r not delivered: %s", alert.rule_id, channel.config.name, reason)
