"""Redis key prefixes of a test's own, on the real Redis on this machine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

__all__ = ["REDIS_URL", "own_prefix"]

REDIS_URL = os.environ.get("TRACEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def own_prefix(base: str = "traceway-test:") -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"{base}{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
