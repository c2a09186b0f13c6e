"""A gateway in front of the upstream simulator, both on real loopback HTTP, for the gateway's tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.loopback import serve_in_thread
from vallum.gateway import Gateway, GatewayConfig
from vallum.upstream_sim import Script, create_app


@dataclass
class Running:
    url: str  # the gateway's base URL, e.g. http://127.0.0.1:PORT (clients add /v1)
    sim_url: str
    gateway: Gateway
    events_path: Path

    def events(self) -> list[dict[str, Any]]:
        self.gateway.monitor.flush()
        lines = self.events_path.read_text(encoding="utf-8").splitlines() if self.events_path.exists() else []
        return [json.loads(line) for line in lines]

    def upstream_requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.sim_url}/sim/requests").json()  # type: ignore[no-any-return]


@contextmanager
def running_gateway(
    tmp_path: Path, script: Script | None = None, upstream: dict[str, Any] | None = None, **settings: Any
) -> Iterator[Running]:
    """Start the simulator, then a gateway routing every model to it; `settings` are GatewayConfig fields."""
    with serve_in_thread(create_app(script)) as sim_url:
        events_path = tmp_path / "events.jsonl"
        config = GatewayConfig.model_validate(
            {
                "upstreams": [{"name": "sim", "base_url": f"{sim_url}/v1", **(upstream or {})}],
                "routes": [{"model": "*", "upstream": "sim"}],
                "events": {"sink": "jsonl", "path": str(events_path)},
                "database_url": f"sqlite:///{tmp_path / 'vallum.db'}",
                **settings,
                # A loaded test machine runs the event loop late now and then; shedding is tested on its own.
                "limits": {"max_loop_lag_ms": 10_000, **settings.get("limits", {})},
            }
        )
        gateway = Gateway(config)
        with serve_in_thread(gateway.app()) as url:
            yield Running(url, sim_url, gateway, events_path)
