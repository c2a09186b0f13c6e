"""Between a gateway event (the dict the gateway emits) and an `events` row, both ways.

Scalar fields become columns; the input and output stages without their texts go to `detail` as JSON,
along with any top-level field this module does not know (so fields added to events later survive). The
texts go to `text` according to the store's text mode, and nowhere else.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from vallum.core.types import Action
from vallum.monitor.encryption import EventKeys, Sealed

TextMode = Literal["none", "redacted", "encrypted"]
TEXT_MODES: tuple[TextMode, ...] = ("none", "redacted", "encrypted")

# Fields that columns hold; everything else at the top level of an event is kept in detail["extra"].
_COLUMN_FIELDS = frozenset(
    {"id", "time", "api", "route", "model", "upstream", "identity", "stream", "shadow", "status", "code"}
    | {"policy_version", "input", "output", "tokens", "latency_ms"}
)
# Long enough for any real model name or identity; short enough for index entries. Values come partly from
# clients (the model name), so they are trimmed rather than allowed to fail a batch.
_MAX_SCALAR = 256
_INT32 = 2**31  # INTEGER columns are 32-bit on PostgreSQL


def to_row(event: Mapping[str, Any], text_mode: TextMode, keys: EventKeys | None) -> dict[str, Any]:
    """The `events` row for one event; `keys` is needed only for text_mode "encrypted"."""
    event_id = _scalar(event.get("id")) or uuid.uuid4().hex
    identity = _mapping(event.get("identity"))
    stages = {name: _mapping(event.get(name)) for name in ("input", "output")}
    latency = _mapping(event.get("latency_ms"))
    texts = {name: stage["texts"] for name, stage in stages.items() if stage.get("texts")}
    detail: dict[str, Any] = {
        name: {k: v for k, v in stage.items() if k != "texts"} for name, stage in stages.items()
    }
    extra = {k: v for k, v in event.items() if k not in _COLUMN_FIELDS}
    if extra:
        detail["extra"] = extra
    categories: list[str] = []
    for stage in stages.values():
        for category in stage.get("categories") or ():
            name = str(category)
            if name not in categories:
                categories.append(name)
    input_action, output_action = (_action(stages[s].get("action")) for s in ("input", "output"))
    row: dict[str, Any] = {
        "id": event_id,
        "time": _number(event.get("time")) or time.time(),
        "api": _scalar(event.get("api")),
        "route": _scalar(event.get("route")),
        "model": _scalar(event.get("model")),
        "upstream": _scalar(event.get("upstream")),
        "tenant": _scalar(identity.get("tenant")),
        "user_id": _scalar(identity.get("user")),
        "api_key": _scalar(identity.get("api_key")),
        "ip": _scalar(identity.get("ip")),
        "status": _integer(event.get("status")),
        "code": _scalar(event.get("code")),
        "action": max(input_action, output_action, key=lambda a: a.rank).value,
        "input_action": input_action.value,
        "output_action": output_action.value,
        "categories": "," + ",".join(c.replace(",", " ") for c in categories) + "," if categories else ",",
        "policy_version": _scalar(event.get("policy_version")),
        "shadow": bool(event.get("shadow")),
        "stream": bool(event.get("stream")),
        "tokens": _integer(event.get("tokens")),
        "guard_ms": _number(latency.get("guard")),
        "upstream_ms": _number(latency.get("upstream")),
        "total_ms": _number(latency.get("total")),
        # ASCII-escaped JSON is valid in any database encoding, whatever the client sent.
        "detail": json.dumps(detail, separators=(",", ":"), default=str),
        "text": None,
        "text_mode": "none",
        "key_id": None,
    }
    if texts and text_mode != "none":
        stored = texts_json(texts)
        if text_mode == "redacted":
            row["text"], row["text_mode"] = stored, "redacted"
        else:
            assert keys is not None, "the store checks for keys before it encrypts"
            sealed = keys.encrypt(stored.encode("utf-8"), event_id)
            row["text"], row["text_mode"], row["key_id"] = sealed.blob, "encrypted", sealed.key_id
    return row


def texts_json(texts: Mapping[str, Any]) -> str:
    """{"input": [{"where", "text"}...], "output": [...]} as JSON, readable and searchable (not ASCII-escaped)."""
    return _valid_unicode(json.dumps(texts, ensure_ascii=False, separators=(",", ":"), default=str))


def json_fragment(needle: str) -> str:
    """How `needle` appears inside texts_json's output, so a search finds quotes and newlines too."""
    return _valid_unicode(json.dumps(needle, ensure_ascii=False)[1:-1])


def to_event(row: Mapping[Any, Any], keys: EventKeys | None, decrypt: bool) -> dict[str, Any]:
    """The event as the gateway emitted it, plus "text_mode"; texts only if redacted or decrypted."""
    detail = json.loads(row["detail"])
    event: dict[str, Any] = {
        "id": row["id"],
        "time": row["time"],
        "api": row["api"],
        "route": row["route"],
        "model": row["model"],
        "upstream": row["upstream"],
        "identity": {
            "tenant": row["tenant"],
            "user": row["user_id"],
            "api_key": row["api_key"],
            "ip": row["ip"],
        },
        "stream": row["stream"],
        "shadow": row["shadow"],
        "status": row["status"],
        "code": row["code"],
        "policy_version": row["policy_version"],
        "input": detail.get("input", {}),
        "output": detail.get("output", {}),
        "tokens": row["tokens"],
        "latency_ms": {"guard": row["guard_ms"], "upstream": row["upstream_ms"], "total": row["total_ms"]},
        **detail.get("extra", {}),
        "text_mode": row["text_mode"],
    }
    texts: dict[str, Any] | None = None
    if row["text_mode"] == "redacted":
        texts = json.loads(row["text"])
    elif row["text_mode"] == "encrypted" and decrypt:
        assert keys is not None, "the store checks for keys before it decrypts"
        texts = json.loads(keys.decrypt(Sealed(row["key_id"], row["text"]), row["id"]))
    for stage, stage_texts in (texts or {}).items():
        event[stage]["texts"] = stage_texts
    return event


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _action(value: Any) -> Action:
    try:
        return Action(value)
    except ValueError:
        return Action.ALLOW


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    return _valid_unicode(str(value).replace("\x00", "")[:_MAX_SCALAR])


def _valid_unicode(text: str) -> str:
    # A client can smuggle a lone surrogate in through a JSON escape; no database accepts one.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else max(-_INT32, min(_INT32 - 1, int(number)))
