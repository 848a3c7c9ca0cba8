"""The baseline for gateway overhead: a bare pass-through proxy, raw ASGI + pooled aiohttp.

It does what any gateway must (read and parse the request, send it upstream
over a kept-alive connection, read and parse the answer) and nothing else.

    BARE_PROXY_UPSTREAM=http://127.0.0.1:9000 uvicorn bare_proxy:app --loop uvloop
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson

UPSTREAM = os.environ.get("BARE_PROXY_UPSTREAM", "http://127.0.0.1:9000")
_state: dict[str, aiohttp.ClientSession] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, limit_per_host=100)
                _state["http"] = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _state["http"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = orjson.loads(body)
    headers = {"content-type": "application/json"}
    for name, value in scope["headers"]:
        if name == b"authorization":
            headers["authorization"] = value.decode()
    url = UPSTREAM + scope["path"]
    async with _state["http"].post(url, data=orjson.dumps(request), headers=headers) as upstream:
        status, answer = upstream.status, await upstream.read()
    orjson.loads(answer)  # a gateway reads the answer (usage, model)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": answer})
