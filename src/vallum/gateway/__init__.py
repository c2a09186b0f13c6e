"""The gateway: an OpenAI- and Anthropic-compatible proxy that applies policy to every request and answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vallum.gateway.app import Gateway
    from vallum.gateway.config import ConfigError, GatewayConfig

__all__ = ["ConfigError", "Gateway", "GatewayConfig"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the admin side imports gateway.config, and the app imports the admin side.
    if name == "Gateway":
        from vallum.gateway.app import Gateway

        return Gateway
    if name in ("ConfigError", "GatewayConfig"):
        from vallum.gateway import config

        return getattr(config, name)
    raise AttributeError(name)
