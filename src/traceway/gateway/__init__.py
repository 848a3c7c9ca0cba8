"""The AI gateway: OpenAI's HTTP API in front of many providers, tracing itself.

>>> from traceway.gateway import Gateway, GatewaySettings
>>> app = Gateway(GatewaySettings())  # an ASGI app serving /v1/...
"""

from traceway.gateway.app import Gateway
from traceway.gateway.errors import GatewayError
from traceway.gateway.settings import BreakerSettings, GatewaySettings
from traceway.gateway.standalone import create_standalone_app

__all__ = ["BreakerSettings", "Gateway", "GatewayError", "GatewaySettings", "create_standalone_app"]
