"""Model kinds: how text goes in and what comes out, beyond raw tensors.

- "tensor": raw tensors only (agent convention: one input, one output, raw LE bytes).
- "embedding": a sentence encoder (input_ids/attention_mask/token_type_ids ->
  last_hidden_state) with a tokenizer.json; mean pooling over the attention mask, then L2
  normalisation, as sentence-transformers' all-MiniLM-L6-v2 does.
- "char_lm": a character model mapping a fixed-size context of token ids to next-token
  logits; generation and sampling happen in the service (_engine.py).
- "llm": a decoder with a KV cache, a tokenizer.json and a chat template (_llm.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lockstep_inference._errors import InvalidInputError, ModelLoadError
from lockstep_inference._repository import ModelFiles
from lockstep_inference._session import OrtSession

__all__ = ["CharLMAdapter", "EmbeddingAdapter", "adapter_for"]


class EmbeddingAdapter:
    """Text -> unit-length float32 sentence vector."""

    def __init__(self, files: ModelFiles) -> None:
        from tokenizers import Tokenizer  # imported here: only embedding models need it

        spec = files.spec
        name = str(spec.get("tokenizer", "tokenizer.json"))
        path = (files.directory / name).resolve()
        if files.directory.resolve() not in path.parents:
            raise ModelLoadError(
                f"model {files.name!r}: tokenizer path {name!r} leaves the model directory"
            )
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelLoadError(
                f"model {files.name!r}: cannot load tokenizer {name}: {exc}"
            ) from None
        self.max_length = int(spec.get("max_length", 128))
        # No padding: every text is encoded alone, so its vector cannot depend on which
        # other texts share a batch (padding length changes kernel shapes).
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.output = str(spec.get("output", "last_hidden_state"))
        self.normalize = bool(spec.get("normalize", True))

    def encode(self, text: str) -> dict[str, np.ndarray]:
        """Model inputs for one text (batch of 1)."""
        enc = self.tokenizer.encode(text)
        return {
            "input_ids": np.asarray([enc.ids], dtype=np.int64),
            "attention_mask": np.asarray([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.asarray([enc.type_ids], dtype=np.int64),
        }

    def pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean over unmasked tokens, then L2 normalisation; float32 [batch, dim]."""
        m = mask.astype(np.float32)[:, :, None]
        summed = (hidden.astype(np.float32) * m).sum(axis=1)
        counts = np.maximum(m.sum(axis=1), np.float32(1e-9))
        vec = (summed / counts).astype(np.float32)
        if self.normalize:
            norm = np.maximum(np.sqrt((vec * vec).sum(axis=1, keepdims=True)), np.float32(1e-12))
            vec = (vec / norm).astype(np.float32)
        out: np.ndarray = vec
        return out

    def embed(self, session: OrtSession, text: str) -> np.ndarray:
        """The vector of one text, float32 [dim]."""
        feeds = self.encode(text)
        wanted = {s.name for s in session.inputs}
        feeds = {k: v for k, v in feeds.items() if k in wanted}
        (hidden,) = session.run(feeds, [self.output])
        vec: np.ndarray = self.pool(hidden, feeds["attention_mask"])[0]
        return vec


class CharLMAdapter:
    """Characters <-> token ids, and next-token logits for a context."""

    def __init__(self, files: ModelFiles) -> None:
        spec = files.spec
        vocab = spec.get("vocab")
        if not isinstance(vocab, list) or not vocab or not all(isinstance(v, str) for v in vocab):
            raise ModelLoadError(
                f"model {files.name!r}: char_lm needs a 'vocab' list of strings in lockstep.json"
            )
        self.vocab: list[str] = vocab
        self.index = {ch: i for i, ch in enumerate(vocab)}
        self.block_size = int(spec.get("block_size", 8))
        self.eos_token = int(spec.get("eos_token", 0))
        self.input = str(spec.get("input", "context"))
        self.output = str(spec.get("output", "logits"))
        self.lowercase = bool(spec.get("lowercase", True))

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt; INVALID_ARGUMENT naming the first character not in vocab."""
        text = prompt.lower() if self.lowercase else prompt
        ids: list[int] = []
        for pos, ch in enumerate(text):
            tok = self.index.get(ch)
            if tok is None or tok == self.eos_token:
                allowed = "".join(v for i, v in enumerate(self.vocab) if i != self.eos_token)
                raise InvalidInputError(
                    f"prompt character {ch!r} at {pos} is not in the model's vocabulary {allowed!r}"
                )
            ids.append(tok)
        return ids

    def text_of(self, token: int) -> str:
        """Text of a token ("" for the end token)."""
        return "" if token == self.eos_token else self.vocab[token]

    def logits(self, session: OrtSession, context: list[int]) -> np.ndarray:
        """Next-token logits (float32 [vocab]) for the last block_size tokens."""
        window = ([self.eos_token] * self.block_size + context)[-self.block_size :]
        (out,) = session.run({self.input: np.asarray([window], dtype=np.int64)}, [self.output])
        return np.asarray(out, dtype=np.float32).reshape(-1)


Adapter = EmbeddingAdapter | CharLMAdapter | None  # or LLMAdapter (kind "llm", _llm.py)


def adapter_for(files: ModelFiles) -> Any:
    """The adapter of a model's kind (None for raw tensor models)."""
    if files.kind == "embedding":
        return EmbeddingAdapter(files)
    if files.kind == "char_lm":
        return CharLMAdapter(files)
    if files.kind == "llm":
        from lockstep_inference._llm import LLMAdapter

        return LLMAdapter(files)
    return None
