"""Running the gateway under uvicorn, with a shutdown that lets open streams finish."""

from __future__ import annotations

import logging
import math
from typing import Any

import uvicorn

from vallum.gateway.app import Gateway
from vallum.gateway.config import GatewayConfig

log = logging.getLogger(__name__)


def serve(config: GatewayConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise, and slow
    gateway = Gateway(config)
    upstreams = ", ".join(f"{u.name}={u.base_url}" for u in config.upstreams) or "none"
    log.info(
        "vallum gateway on http://%s:%d (upstreams: %s; client keys %s%s)",
        config.host,
        config.port,
        upstreams,
        "required" if config.keys_required else "optional on loopback",
        "; shadow mode" if config.shadow else "",
    )
    uvicorn.run(gateway.app(), host=config.host, port=config.port, **uvicorn_options(config))


def uvicorn_options(config: GatewayConfig) -> dict[str, Any]:
    """How uvicorn runs the gateway, beyond where it listens."""
    return {
        "log_level": "warning",
        # uvicorn stops accepting on SIGTERM, then waits this long for open requests and streams before
        # cancelling them; rounded up, as uvicorn takes whole seconds and 0 would cut every stream at once.
        "timeout_graceful_shutdown": math.ceil(config.drain_s),
        "timeout_keep_alive": 30,
    }
