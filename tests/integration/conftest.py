"""Every test here that takes ``server`` runs against SQLite and the real PostgreSQL."""

from __future__ import annotations

from tests.support.live_server import RunningServer, experiment, server, store_url

__all__ = ["RunningServer", "experiment", "server", "store_url"]
