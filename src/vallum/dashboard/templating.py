"""The Jinja2 environment of the dashboard's templates: autoescaping always on, undefined names an error.

Event text, identities, categories and policy text come from clients or admins; autoescaping makes every
one of them text in the page, whatever characters it holds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

_CSS_NAME = re.compile(r"[^a-z0-9_-]+")


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("vallum.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=utc, css=css_name, compact_json=compact_json, ms=milliseconds, pct=percent)
    return env


def utc(epoch: float | None) -> str:
    """Epoch seconds as `2025-01-31 13:05:09` (UTC), the form every page shows times in."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def css_name(value: object) -> str:
    """A value made safe for a class name: categories and actions become `cat-secrets`-style suffixes."""
    return _CSS_NAME.sub("-", str(value).lower()).strip("-") or "unknown"


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "), default=str)


def milliseconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
