"""Automatic tracing of the official ``openai`` client.

>>> import traceway
>>> from openai import OpenAI
>>> traceway.openai.autolog()
>>> client = OpenAI(base_url="http://localhost:5000/v1", api_key="sk-test")
>>> traceway.openai.autolog(disable=True)

:func:`autolog` patches the client's resource classes, so every client
instance, sync or async, whatever its ``base_url`` (OpenAI, a gateway, vLLM,
Ollama, Portkey...), is traced:

========================================  ==========  ==========================
method (sync and async)                   span type   output
========================================  ==========  ==========================
``chat.completions.create`` / ``parse``   CHAT_MODEL  the ``ChatCompletion``
``responses.create`` / ``parse``          CHAT_MODEL  the ``Response``
``completions.create``                    LLM         the ``Completion``
``embeddings.create``                     EMBEDDING   the ``CreateEmbeddingResponse``
========================================  ==========  ==========================

``with_raw_response`` calls are traced too, and so are the ``stream()``
helpers, which are built on ``create``.  Inputs are the request (messages,
tools, parameters; never headers or the API key); GenAI attributes carry the
provider, models, token usage, finish reasons, request parameters and the
server's host and port.  ``stream=True`` calls keep their span open until the
stream ends; see :mod:`traceway.integrations._openai_streams`.  A failed call
(HTTP error, timeout, connection error) ends its span with status ERROR and the
OpenAI error's type and message; the exception reaches the caller unchanged.
Every request carries a W3C ``traceparent`` header naming its span, so the
Traceway gateway nests its own spans under it.

Supported ``openai`` versions: ``>=1.40,<4`` (:data:`SUPPORTED_OPENAI`).  The
patch relies on the resource classes in ``openai.resources.*``, on
``openai.Stream`` / ``openai.AsyncStream`` (``_iterator`` and ``close``) and on
``LegacyAPIResponse.parse``, which keep the same layout across 1.x, 2.x and 3.x
(checked with 1.40, 1.109, 2.8 and 3.57).  Methods a version lacks (the Responses
API and the non-beta ``chat.completions.parse`` in early 1.x releases, where
``beta.chat.completions.parse`` is traced instead) are skipped.

Limits: a resource's ``with_raw_response`` accessor binds the method it wraps
when first used, so one first used before ``autolog()`` stays untraced;
``with_streaming_response`` calls are traced without their outputs, which the
application reads from the HTTP response itself.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Final

import openai

from traceway.integrations._openai_attributes import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    RESPONSE,
    Endpoint,
)
from traceway.integrations._openai_calls import Switch, traced_async_method, traced_method
from traceway.tracing._internal import logger

__all__ = ["SUPPORTED_OPENAI", "autolog"]

#: The ``openai`` versions whose class layout this integration relies on.
SUPPORTED_OPENAI: Final = ">=1.40,<4"
_SUPPORTED_MAJORS: Final = frozenset({"1", "2", "3"})

# (API under ``openai.resources``, class, method, kind); the span is named "<API>.<method>"
# and each class has an ``Async`` twin.
_TARGETS: Final = (
    ("chat.completions", "Completions", "create", CHAT),
    ("chat.completions", "Completions", "parse", CHAT),
    ("beta.chat.completions", "Completions", "parse", CHAT),
    ("completions", "Completions", "create", COMPLETION),
    ("embeddings", "Embeddings", "create", EMBEDDING),
    ("responses", "Responses", "create", RESPONSE),
    ("responses", "Responses", "parse", RESPONSE),
)

_lock = threading.Lock()


class _Patches:
    """What the current ``autolog()`` replaced, to put back on ``disable=True``."""

    def __init__(self) -> None:
        self.switch = Switch()
        self.replaced: list[tuple[type, str, Any]] = []  # (class, method, original)


_active: _Patches | None = None


def autolog(disable: bool = False) -> None:
    """Trace every call of the ``openai`` client from now on (``disable=True``: stop).

    Safe to call more than once: a second call changes nothing, so calls are
    never traced twice.  ``disable=True`` puts every patched method back;
    recording also stops under :func:`traceway.disable`.

    >>> traceway.openai.autolog()  # doctest: +SKIP
    >>> client.chat.completions.create(model="gpt-4o", messages=[...])  # doctest: +SKIP
    """
    global _active
    with _lock:
        if disable:
            if _active is not None:
                _unpatch(_active)
                _active = None
        elif _active is None:
            _active = _patch()


def _patch() -> _Patches:
    major = openai.__version__.split(".", 1)[0]
    if major not in _SUPPORTED_MAJORS:
        logger.warning(
            "traceway: openai %s is outside the supported range %s; tracing may be incomplete",
            openai.__version__,
            SUPPORTED_OPENAI,
        )
    patches = _Patches()
    for api, class_name, method, kind in _TARGETS:
        try:
            module = importlib.import_module(f"openai.resources.{api}")
        except ImportError:
            continue  # an API this version of the client does not have
        endpoint = Endpoint.of(f"{api}.{method}", kind)
        for name, wrap in (
            (class_name, traced_method),
            (f"Async{class_name}", traced_async_method),
        ):
            cls = getattr(module, name, None)
            if not isinstance(cls, type):
                continue
            original = vars(cls).get(method)
            if original is None or getattr(original, "_traceway_autolog", False):
                continue
            setattr(cls, method, wrap(original, endpoint, patches.switch))
            patches.replaced.append((cls, method, original))
    return patches


def _unpatch(patches: _Patches) -> None:
    # Wrappers still reachable (another library wrapped them, or a cached
    # ``with_raw_response`` holds one) pass calls straight through from now on.
    patches.switch.on = False
    for cls, method, original in reversed(patches.replaced):
        if getattr(vars(cls).get(method), "_traceway_autolog", False):
            setattr(cls, method, original)
