"""Behaviour analytics: a risk score per identity from what its recent requests looked like.

Every gateway event updates each of its identities ("user:acme/alice", "key:team-a", "tenant:acme",
"ip:10.0.0.1") in sliding windows, and seven features are read back:

- burst:      requests blocked in the last minute, less an allowance for the guard's false positives
              (a share of all requests), so that a busy shared identity is not judged by volume alone;
- persistence: distinct blocked requests (by fingerprint) in an hour, less the same kind of allowance,
              for attempts spread out so that no minute looks like a burst; a request refused again
              unchanged (a retry) counts once;
- probing:    distinct attack rules hit by flagged or blocked requests in 30 minutes (many techniques);
- mutation:   distinct variants of one attack in 30 minutes: requests whose fingerprint is near an
              earlier flagged or blocked request's, also those that got through (a request repeated
              unchanged is not a new variant);
- extraction: distinct messages in an hour with system-prompt extraction findings or leakage, whatever
              the request's action, so that attempts spread over many turns add up (a message repeated in
              later turns of the same conversation counts once);
- volume:     requests in the last period against the identity's own exponentially weighted baseline,
              once the identity has enough history;
- output:     PII and secrets found in model outputs in an hour, less an allowance per request.

Each feature's value maps to a partial score through a ramp (0 up to `start`, rising linearly to `cap` at
`full`); the risk combines the partial scores by noisy-OR, like vallum's category scores. The level and
the recommended action follow the thresholds: `alert` from `alert_at` (level elevated), `cooldown` from
`cooldown_at` and `block` from `block_at` (level high). Windows expire, so risk falls again when the
behaviour stops.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.monitor.windows import Change, Layout, Reading, Windows

Level = Literal["none", "elevated", "high"]
Recommendation = Literal["none", "alert", "cooldown", "block"]
IdentityKind = Literal["user", "key", "tenant", "ip"]

FEATURES = ("burst", "persistence", "probing", "mutation", "extraction", "volume", "output")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Ramp(_Strict):
    start: float = Field(ge=0)  # the value from which the partial score rises above 0
    full: float  # the value at which it reaches `cap`
    cap: float = Field(0.95, gt=0, le=1)

    @model_validator(mode="after")
    def _full_above_start(self) -> _Ramp:
        if self.full <= self.start:
            raise ValueError(f"full ({self.full}) must be greater than start ({self.start})")
        return self

    def partial(self, value: float) -> float:
        if value <= self.start:
            return 0.0
        return self.cap * min(1.0, (value - self.start) / (self.full - self.start))


class Feature(_Ramp):
    window_s: float = Field(gt=0)
    # What ordinary traffic produces per request in the window (the guard's false positives and the
    # retries they cause, ordinary personal data in answers): taken off the value first, so that an identity
    # many people share (a tenant, an office IP) is not judged by its volume alone.
    allowance: float = Field(0.0, ge=0)


class MutationFeature(Feature):
    near_distance: int = Field(12, ge=0, le=64)  # bits of 64; unrelated texts differ in about 30
    fingerprints_kept: int = Field(32, ge=1)


class VolumeFeature(_Ramp):
    """`start` and `full` are ratios of the current period's requests to the baseline."""

    period_s: float = Field(600.0, gt=0)
    alpha: float = Field(0.1, gt=0, le=1)  # weight of the latest period in the baseline
    min_periods: int = Field(6, ge=0)  # history needed before volume counts
    min_requests: int = Field(30, ge=0)  # fewer requests in a period never count as unusual
    # The baseline is at least this, so a quiet identity is not judged on noise.
    floor: float = Field(5.0, gt=0)


_TENANT_NEEDS_MORE: dict[IdentityKind, float] = {"tenant": 3.0}


class AnalyticsConfig(_Strict):
    identities: tuple[IdentityKind, ...] = ("user", "key", "tenant", "ip")
    # How much more evidence an identity of this kind needs, because many people stand behind it: every
    # windowed feature's value is divided by it (volume, relative to the identity's own baseline, is not).
    # A tenant's users each have the guard's false positives and retries, and together they look like one
    # busy persistent user.
    evidence_scale: dict[IdentityKind, float] = Field(default_factory=lambda: dict(_TENANT_NEEDS_MORE))
    burst: Feature = Feature(window_s=60, start=3, full=12, cap=0.99, allowance=0.05)
    persistence: Feature = Feature(window_s=3600, start=3, full=12, cap=0.9, allowance=0.05)
    probing: Feature = Feature(window_s=1800, start=2, full=6, cap=0.95, allowance=0.01)
    mutation: MutationFeature = MutationFeature(window_s=1800, start=2, full=6, cap=0.95, allowance=0.02)
    extraction: Feature = Feature(window_s=3600, start=0.5, full=5, cap=0.95, allowance=0.01)
    # Capped below alert_at: a legitimate batch job looks just like this, so volume alone never alerts; it
    # raises the risk of an identity that also does something else.
    volume: VolumeFeature = VolumeFeature(start=5, full=25, cap=0.35)
    output: Feature = Feature(window_s=3600, start=10, full=60, cap=0.9, allowance=1.0)
    alert_at: float = Field(0.5, gt=0, le=1)
    cooldown_at: float = Field(0.8, gt=0, le=1)
    block_at: float = Field(0.95, gt=0, le=1)
    cooldown_s: float = Field(300.0, gt=0)
    attack_categories: frozenset[str] = frozenset({"injection", "leakage"})
    extraction_subtypes: frozenset[str] = frozenset({"prompt_extraction"})
    extraction_categories: frozenset[str] = frozenset({"leakage"})
    sensitive_output_categories: frozenset[str] = frozenset({"pii", "secrets"})

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> AnalyticsConfig:
        if not self.alert_at <= self.cooldown_at <= self.block_at:
            raise ValueError("thresholds must satisfy alert_at <= cooldown_at <= block_at")
        return self


@dataclass(frozen=True, slots=True)
class Risk:
    identity: str
    score: float  # in [0, 1]: noisy-OR of the contributions
    level: Level
    action: Recommendation
    cooldown_s: float  # how long to refuse the identity when action is "cooldown", else 0
    features: Mapping[str, float]  # each feature's value (counts; volume is a ratio to the baseline)
    contributions: Mapping[str, float]  # each feature's partial score

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "score": self.score,
            "level": self.level,
            "action": self.action,
            "cooldown_s": self.cooldown_s,
            "features": dict(self.features),
            "contributions": dict(self.contributions),
        }


# Names of the window counters; one counter per distinct (name, window) pair in the layout.
_REQUESTS, _BLOCKED, _SENSITIVE = "requests", "blocked", "sensitive_output"
_MAX_ID_CHARS = 128
_HEX64 = re.compile(r"[0-9a-fA-F]{16}")


class BehaviourAnalytics:
    """Feed it every event with `observe`; ask `risk` about an identity at any time."""

    def __init__(
        self,
        windows: Windows,
        config: AnalyticsConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.windows = windows
        self.config = config or AnalyticsConfig()
        self.clock = clock
        c = self.config
        counters: list[tuple[str, float]] = []

        def counter(name: str, window: float) -> int:
            if (name, window) not in counters:
                counters.append((name, window))
            return counters.index((name, window))

        self._windowed: dict[str, Feature] = {
            "burst": c.burst,
            "persistence": c.persistence,
            "probing": c.probing,
            "mutation": c.mutation,
            "extraction": c.extraction,
            "output": c.output,
        }
        self._ramps: dict[str, _Ramp] = {**self._windowed, "volume": c.volume}
        self._scale: dict[str, float] = {str(kind): v for kind, v in c.evidence_scale.items()}
        # Requests in each feature's window, for its allowance.
        self._requests = {name: counter(_REQUESTS, f.window_s) for name, f in self._windowed.items()}
        self._requests_volume = counter(_REQUESTS, c.volume.period_s)
        self._blocked = counter(_BLOCKED, c.burst.window_s)
        self._sensitive = counter(_SENSITIVE, c.output.window_s)
        self.layout = Layout(
            counters=tuple(counters),
            sets=(
                ("probe", c.probing.window_s),
                ("extraction", c.extraction.window_s),
                ("blocked", c.persistence.window_s),
            ),
            fingerprint_window_s=c.mutation.window_s,
            fingerprints_kept=c.mutation.fingerprints_kept,
            near_distance=c.mutation.near_distance,
            baseline_period_s=c.volume.period_s,
            baseline_alpha=c.volume.alpha,
        )

    def observe(self, event: Mapping[str, Any]) -> Risk:
        """Count one gateway event for each of its identities; the risk of the riskiest of them.

        An event without any identity gives an empty risk for identity "". Raises WindowsUnavailable when
        a shared store cannot be reached."""
        risks = self.observe_all(event)
        if not risks:
            return self._risk("", None)
        return max(risks, key=lambda r: r.score)

    def observe_all(self, event: Mapping[str, Any]) -> list[Risk]:
        """Like `observe`, with the risk of every identity of the event (user, key, tenant, ip order)."""
        keys = identity_keys(event.get("identity"), self.config.identities)
        if not keys:
            return []
        now = event.get("time")
        if not isinstance(now, int | float) or isinstance(now, bool):
            now = self.clock()
        readings = self.windows.apply(self.layout, keys, self._change(event), float(now))
        return [self._risk(key, reading) for key, reading in zip(keys, readings, strict=True)]

    def risk(self, identity_key: str) -> Risk:
        """The current risk of one identity key, e.g. "user:acme/alice"; reads, changes nothing."""
        (reading,) = self.windows.apply(self.layout, [identity_key], Change(), self.clock())
        return self._risk(identity_key, reading)

    def _change(self, event: Mapping[str, Any]) -> Change:
        c = self.config
        stage_in = _mapping(event.get("input"))
        stage_out = _mapping(event.get("output"))
        action = stage_in.get("action")
        suspicious = action in ("flag", "block")
        findings_in = _findings(stage_in)

        rules: set[str] = set()
        extraction: dict[str, list[str]] = {}
        for f in findings_in:
            category, subtype = f.get("category"), f.get("subtype")
            if suspicious and category in c.attack_categories:
                rules.add(str(f.get("rule_id") or f"{f.get('detector')}:{subtype}"))
            if subtype in c.extraction_subtypes or category in c.extraction_categories:
                # A chat request carries its history: the message at the same place with the same findings
                # is the same attempt seen again, not a new one.
                extraction.setdefault(str(f.get("where")), []).append(f"{f.get('rule_id')}{f.get('span')}")
        members = [f"{where}|{','.join(sorted(found))}" for where, found in extraction.items()]
        sensitive = 0
        for f in _findings(stage_out):
            if f.get("category") in c.sensitive_output_categories:
                sensitive += 1
            if f.get("subtype") in c.extraction_subtypes or f.get("category") in c.extraction_categories:
                members.append(f"output|{event.get('id')}")  # every answer is new, so each leak counts

        fingerprint = _fingerprint(stage_in.get("fingerprint"))
        # Distinct texts: a request refused again unchanged ("retry") is one attempt, not two.
        blocked = (fingerprint or f"id:{event.get('id')}",) if action == "block" else ()
        counts = [0] * len(self.layout.counters)
        for i in (*self._requests.values(), self._requests_volume):
            counts[i] = 1
        counts[self._blocked] = int(action == "block")
        counts[self._sensitive] += sensitive
        return Change(
            counts=tuple(counts),
            members=(tuple(sorted(rules)), tuple(members), blocked),
            fingerprint=fingerprint,
            remember=suspicious and bool(rules),
            volume=1,
        )

    def _risk(self, identity: str, reading: Reading | None) -> Risk:
        c = self.config
        if reading is None:
            features = dict.fromkeys(FEATURES, 0.0)
        else:
            counts = reading.counts
            volume_now = counts[self._requests_volume]
            volume = 0.0
            if reading.periods >= c.volume.min_periods and volume_now >= c.volume.min_requests:
                volume = volume_now / max(reading.baseline, c.volume.floor)
            raw = {
                "burst": counts[self._blocked],
                "persistence": reading.distinct[2],
                "probing": reading.distinct[0],
                "mutation": reading.variants,
                "extraction": reading.distinct[1],
                "output": counts[self._sensitive],
            }
            scale = self._scale.get(identity.partition(":")[0], 1.0)
            features = {}
            for name, value in raw.items():
                if value:
                    excess = (value - self._windowed[name].allowance * counts[self._requests[name]]) / scale
                    features[name] = round(excess, 3) if excess > 0 else 0.0
                else:
                    features[name] = 0.0
            features["volume"] = round(volume, 3)
        contributions = {
            name: round(self._ramps[name].partial(value), 4) if value else 0.0
            for name, value in features.items()
        }
        untouched = 1.0
        for p in contributions.values():
            untouched *= 1.0 - p
        score = round(1.0 - untouched, 4)
        level: Level = "none"
        action: Recommendation = "none"
        if score >= c.block_at:
            level, action = "high", "block"
        elif score >= c.cooldown_at:
            level, action = "high", "cooldown"
        elif score >= c.alert_at:
            level, action = "elevated", "alert"
        cooldown_s = c.cooldown_s if action == "cooldown" else 0.0
        return Risk(identity, score, level, action, cooldown_s, features, contributions)


def identity_keys(
    identity: object, kinds: Sequence[IdentityKind] = ("user", "key", "tenant", "ip")
) -> list[str]:
    """The analytics keys of an event's identity, e.g. ["user:acme/alice", "key:team-a", "tenant:acme"].

    A user is named within its tenant, since user names are only unique there."""
    ident = _mapping(identity)
    tenant = _name(ident.get("tenant"))
    values: dict[IdentityKind, str | None] = {
        "user": _name(ident.get("user")),
        "key": _name(ident.get("api_key")),
        "tenant": tenant,
        "ip": _name(ident.get("ip")),
    }
    keys = []
    for kind in kinds:
        value = values[kind]
        if value is None:
            continue
        if kind == "user" and tenant is not None:
            value = f"{tenant}/{value}"
        keys.append(f"{kind}:{value}")
    return keys


def _name(value: object) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    if len(text) > _MAX_ID_CHARS:  # identities come from clients; keys stay short whatever they send
        return "h:" + blake2b(text.encode(errors="replace"), digest_size=16).hexdigest()
    return text


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _findings(stage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = stage.get("findings")
    if not isinstance(found, list):
        return []
    return [f for f in found if isinstance(f, Mapping)]


def _fingerprint(value: object) -> str | None:
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        return None
    return value.lower()
