"""An independent numpy forward pass of the llama architecture over the GGUF's weights.

Written from the architecture's definition, not from the ONNX converter: float64 throughout,
the whole sequence recomputed (no KV cache), explicit per-head loops for grouped-query
attention, RoPE on adjacent pairs as GGUF's permuted q/k weights expect. Slow but obvious.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Hyper-parameters and float64 weights ([out, in], as GGUF stores them)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    hp = {
        "layers": int(field("llama.block_count")),
        "heads": int(field("llama.attention.head_count")),
        "kv_heads": int(field("llama.attention.head_count_kv")),
        "dim": int(field("llama.embedding_length")),
        "base": float(field("llama.rope.freq_base")),
        "eps": float(field("llama.attention.layer_norm_rms_epsilon")),
    }
    weights = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64) for t in reader.tensors}
    return hp, weights


def _rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    out: np.ndarray = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w
    return out


def _rope(x: np.ndarray, base: float) -> np.ndarray:
    """x [seq, head_dim]; position p rotates pair (2i, 2i+1) by p * base^(-2i/head_dim)."""
    seq, hd = x.shape
    theta = base ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(seq)[:, None] * theta[None, :]
    c, s = np.cos(ang), np.sin(ang)
    even, odd = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = even * c - odd * s
    out[:, 1::2] = even * s + odd * c
    return out


def logits(hp: dict[str, Any], w: dict[str, np.ndarray], tokens: list[int]) -> np.ndarray:
    """Next-token logits (float64 [vocab]) after `tokens`."""
    nh, nkv, dim = hp["heads"], hp["kv_heads"], hp["dim"]
    hd = dim // nh
    emb = w["token_embd.weight"]
    x = emb[np.asarray(tokens)]
    seq = len(tokens)
    causal = np.tril(np.ones((seq, seq), dtype=bool))
    for layer in range(hp["layers"]):
        p = f"blk.{layer}."
        h = _rms(x, w[p + "attn_norm.weight"], hp["eps"])
        q = h @ w[p + "attn_q.weight"].T
        k = h @ w[p + "attn_k.weight"].T
        v = h @ w[p + "attn_v.weight"].T
        heads = []
        for head in range(nh):
            kvh = head // (nh // nkv)
            qh = _rope(q[:, head * hd : (head + 1) * hd], hp["base"])
            kh = _rope(k[:, kvh * hd : (kvh + 1) * hd], hp["base"])
            vh = v[:, kvh * hd : (kvh + 1) * hd]
            scores = qh @ kh.T / np.sqrt(hd)
            scores = np.where(causal, scores, -np.inf)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            heads.append(probs @ vh)
        x = x + np.concatenate(heads, axis=-1) @ w[p + "attn_output.weight"].T
        h = _rms(x, w[p + "ffn_norm.weight"], hp["eps"])
        gate = h @ w[p + "ffn_gate.weight"].T
        up = h @ w[p + "ffn_up.weight"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "ffn_down.weight"].T
    x = _rms(x, w["output_norm.weight"], hp["eps"])
    out: np.ndarray = x[-1] @ emb.T
    return out
