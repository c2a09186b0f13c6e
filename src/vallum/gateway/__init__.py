"""The gateway: an OpenAI- and Anthropic-compatible proxy that applies policy to every request and answer."""

from vallum.gateway.app import Gateway
from vallum.gateway.config import ConfigError, GatewayConfig

__all__ = ["ConfigError", "Gateway", "GatewayConfig"]
