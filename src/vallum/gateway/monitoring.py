"""What happens after each decision, off the request path: the event store, behaviour analytics (with the
escalations policy allows, and snapshots of each risky identity's risk over time), alerts and the audit trail
of blocking decisions.

The request path only enqueues the event twice (the store's writer and this module's worker); a worker
thread then updates each identity's risk, applies cool-downs or blocks when configured, hands the event
and risk to the alerter, and appends blocking decisions to the audit log in batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import make_url

from vallum.admin.controls import IdentityControls
from vallum.audit.blocks import block_detail, is_blocking
from vallum.audit.log import AuditLog
from vallum.audit.signing import Signer
from vallum.gateway.config import GatewayConfig
from vallum.gateway.events import EventSink, JsonlSink, NullSink
from vallum.gateway.metrics import GatewayMetrics
from vallum.monitor.alert_rules import load_ruleset
from vallum.monitor.alerts import Alerter
from vallum.monitor.analytics import BehaviourAnalytics, Risk
from vallum.monitor.database import upgrade
from vallum.monitor.snapshots import SnapshotRecorder
from vallum.monitor.store import EventStore
from vallum.monitor.windows import MemoryWindows, RedisWindows, Windows, WindowsUnavailable
from vallum.monitor.writer import StoreSink

log = logging.getLogger(__name__)

_STOP = object()
_BATCH = 256
_RISKS_KEPT = 10_000  # latest risk per identity, for the admin API's riskiest-identities view


class Monitor:
    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics, controls: IdentityControls) -> None:
        self.config, self.metrics, self.controls = config, metrics, controls
        upgrade(config.database_url)  # idempotent; several replicas starting at once take turns
        events = config.events
        self.store: EventStore | None = None  # for queries; the writer has its own connection pool
        self.sink: EventSink
        if events.sink == "store":
            self.sink = StoreSink(
                EventStore(config.database_url, text_mode=events.text),
                queue_size=events.queue_size,
                batch_size=events.batch_size,
                overflow=events.overflow,
                spool=spool_directory(events.spool, config.database_url),
            )
            self.store = EventStore(config.database_url, text_mode=events.text)
        elif events.sink == "jsonl":
            self.sink = JsonlSink(events.path, events.queue_size)
        else:
            self.sink = NullSink()
        self.analytics: BehaviourAnalytics | None = None
        if config.analytics.enabled:
            windows: Windows = (
                RedisWindows.from_url(config.redis_url) if config.redis_url else MemoryWindows()
            )
            self.analytics = BehaviourAnalytics(windows)
        # Risk over time lives beside the events it summarises, for the admin API and the dashboard.
        self.snapshots = (
            SnapshotRecorder(self.store.engine)
            if self.analytics is not None and self.store is not None
            else None
        )
        self.alerter = Alerter(load_ruleset(config.alerts)) if config.alerts else None
        audit = config.audit
        self.audit = (
            AuditLog.open(db_url=config.database_url, signer=Signer.from_env())
            if audit.backend == "database"
            else AuditLog.open(file=audit.path, signer=Signer.from_env())
        )
        self.risks: OrderedDict[str, Risk] = OrderedDict()
        self.after_dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=events.queue_size)
        self._worker = threading.Thread(target=self._work, name="vallum-monitor", daemon=True)
        self._worker.start()

    # ---- request path ------------------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        self.sink.emit(event)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.after_dropped += 1

    @property
    def dropped(self) -> int:
        return self.sink.dropped + self.after_dropped

    def flush(self) -> None:
        """Wait until the events emitted so far are written and assessed (tests and orderly shutdowns)."""
        self._queue.join()
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()

    def riskiest(self, limit: int) -> list[dict[str, Any]]:
        ranked = sorted(self.risks.values(), key=lambda r: r.score, reverse=True)
        return [r.to_dict() for r in ranked[:limit]]

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join()
        self.sink.close()
        if self.alerter is not None:
            self.alerter.close()
        if self.analytics is not None:
            self.analytics.windows.close()
        if self.store is not None:
            self.store.close()
        self.audit.close()

    # ---- worker ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [e for e in batch if e is not _STOP]
            try:
                self._after(events)  # type: ignore[arg-type]
            except Exception:  # the monitor must never take the gateway down; the log says what broke
                log.exception("monitoring failed for %d events", len(events))
            for _ in batch:
                self._queue.task_done()
            if len(events) < len(batch):
                return

    def _after(self, events: list[dict[str, Any]]) -> None:
        blocks = []
        for event in events:
            risk = self._assess(event)
            if self.alerter is not None:
                self.alerter.emit(event, risk)
            if self.config.audit.blocks and is_blocking(event):
                blocks.append(event)
        if blocks:
            drafts = [
                self.audit.draft(
                    "block", actor="gateway", target=str(e.get("id", "")), detail=block_detail(e)
                )
                for e in blocks
            ]
            self.audit.record_many(drafts)
        if self.snapshots is not None:
            self.snapshots.flush()  # one transaction per worker batch, and only when a snapshot is due

    def _assess(self, event: dict[str, Any]) -> Risk | None:
        if self.analytics is None:
            return None
        try:
            risks = self.analytics.observe_all(event)
        except WindowsUnavailable as exc:
            self.metrics.analytics_errors.inc()
            log.warning("behaviour analytics unavailable: %s", exc)
            return None
        when = event.get("time")
        now = float(when) if isinstance(when, int | float) and not isinstance(when, bool) else time.time()
        for risk in risks:
            if self.snapshots is not None:
                self.snapshots.offer(risk, now)
            self.risks[risk.identity] = risk
            self.risks.move_to_end(risk.identity)
            if len(self.risks) > _RISKS_KEPT:
                self.risks.popitem(last=False)
            self._escalate(risk)
        return max(risks, key=lambda r: r.score) if risks else None

    def _escalate(self, risk: Risk) -> None:
        act = self.config.analytics
        if risk.action not in act.act or (risk.identity.startswith("ip:") and not act.act_on_ip):
            return
        current = self.controls.check([risk.identity])
        if current is not None and (current.kind == "block" or risk.action == "cooldown"):
            return  # already restricted at least this much
        reason = f"risk {risk.score:.2f}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in risk.contributions.items() if v
        )
        if risk.action == "block":
            done = self.controls.block(risk.identity, reason, "analytics")
        else:
            done = self.controls.cooldown(risk.identity, risk.cooldown_s, reason, "analytics")
        self.audit.record(
            "admin_action", actor="analytics", target=risk.identity, detail={"restriction": done.to_dict()}
        )


def spool_directory(setting: Literal["auto", "off"] | Path, database_url: str) -> Path | None:
    """Where the store sink journals events: beside a SQLite file, so the journal is replayed into the
    database it was meant for; in the working directory for a server database; nowhere when off."""
    if setting == "off":
        return None
    if isinstance(setting, Path):
        return setting
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database + "-spool")
    return Path("vallum-events-spool")
