"""The "llm" kind: a decoder-only language model with a KV cache (see _llm_convert.py).

`LLMAdapter` holds the tokenizer and the chat template; `decode_batch` runs several
generations as one batch: the prompts are left-padded to the longest (attention mask 0 on
the padding, positions counted from each prompt's first real token), prefilled in one
session call, then decoded one token per call for every unfinished row, feeding the
present keys/values back as the past. Rows that finish leave the batch (the KV cache is
compacted). Each row has its own sampling parameters, seed and draw stream, and every step
is logged (token, text, draw, logit, logprob, cumulative logprob, logits hash), so a replay
takes the tokens from the log.

Bit-exactness: the same batch (same prompts in the same order, same parameters, same
model version, provider and settings) gives the same logits bits and tokens. A different
batch composition changes the kernels' shapes and can move logits in the last bits; the
batch size is recorded in the log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockstep_inference._errors import InferenceError, InvalidInputError, ModelLoadError
from lockstep_inference._repository import ModelFiles
from lockstep_inference._sampling import Sampling, draw, logits_sha256, sample_vocab
from lockstep_inference._session import OrtSession

__all__ = ["LLMAdapter", "LLMRequest", "LLMResult", "LLMStep", "decode_batch"]

ROLES = ("system", "user", "assistant")
MAX_STOP = 8
MAX_STOP_BYTES = 64


@dataclass(frozen=True)
class LLMStep:
    """One sampled token."""

    index: int
    token: int
    text: str
    draw: float
    logits_sha256: bytes
    logit: float
    logprob: float
    cumulative_logprob: float


@dataclass(frozen=True)
class LLMRequest:
    """One generation: the prompt's token ids, sampling, stop sequences."""

    prompt: str
    prompt_ids: list[int]
    sampling: Sampling
    stop: tuple[str, ...] = ()
    messages: tuple[tuple[str, str], ...] = ()


@dataclass
class LLMResult:
    """A finished generation."""

    steps: list[LLMStep] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"
    batch_size: int = 1


class LLMAdapter:
    """Tokenizer, chat template and KV-cache layout of an llm model."""

    def __init__(self, files: ModelFiles) -> None:
        from tokenizers import Tokenizer

        spec = files.spec

        def member(key: str, default: str) -> str:
            name = str(spec.get(key, default))
            path = (files.directory / name).resolve()
            if files.directory.resolve() not in path.parents:
                raise ModelLoadError(
                    f"model {files.name!r}: {key} path {name!r} leaves the model directory"
                )
            return str(path)

        try:
            self.tokenizer = Tokenizer.from_file(member("tokenizer", "tokenizer.json"))
            with open(member("chat_template", "chat_template.jinja"), encoding="utf-8") as f:
                self.template = f.read()
            cfg = spec["config"]
            self.n_layers = int(cfg["n_layers"])
            self.n_kv_heads = int(cfg["n_kv_heads"])
            self.head_dim = int(cfg["head_dim"])
            self.vocab_size = int(cfg["vocab_size"])
            self.context_length = int(cfg["context_length"])
            self.pad_token = int(cfg.get("pad_token_id", cfg.get("eos_token_id", 0)))
            self.stop_tokens = frozenset(int(t) for t in spec.get("stop_tokens", []))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"model {files.name!r}: bad llm files: {exc}") from None
        except Exception as exc:  # tokenizers raises its own exception type
            raise ModelLoadError(
                f"model {files.name!r}: cannot load the tokenizer: {exc}"
            ) from None
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # ChatML (<|im_start|>role\ncontent<|im_end|>\n); the template's default system
        # message is used when a conversation does not start with one.
        found = re.search(r"'<\|im_start\|>system\n(.*?)<\|im_end\|>", self.template, re.S)
        if "<|im_start|>" not in self.template:
            raise ModelLoadError(f"model {files.name!r}: only ChatML chat templates are rendered")
        self.default_system = found.group(1) if found else ""
        self._special = {self.tokenizer.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>")}

    def render(self, messages: list[tuple[str, str]]) -> str:
        """The chat template applied to `messages`, ending with the assistant's opening."""
        if not messages:
            raise InvalidInputError("a chat needs at least one message")
        parts = []
        if messages[0][0] != "system" and self.default_system:
            parts.append(f"<|im_start|>system\n{self.default_system}<|im_end|>\n")
        for role, content in messages:
            if role not in ROLES:
                raise InvalidInputError(f"chat role {role!r} is not one of {list(ROLES)}")
            parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt (control tokens in the text are recognised)."""
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids (control tokens dropped)."""
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Zero-length past keys/values for a batch."""
        shape = (batch, self.n_kv_heads, 0, self.head_dim)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * self.n_layers)]

    def past_names(self) -> list[str]:
        return [f"past.{i}.{kv}" for i in range(self.n_layers) for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kv}" for i in range(self.n_layers) for kv in ("key", "value")]

    def check(self, req: LLMRequest) -> None:
        """Refuse requests that cannot fit the context."""
        if not req.prompt_ids:
            raise InvalidInputError("the prompt encodes to no tokens")
        if len(req.prompt_ids) + req.sampling.max_tokens > self.context_length:
            raise InvalidInputError(
                f"prompt of {len(req.prompt_ids)} tokens plus max_tokens "
                f"{req.sampling.max_tokens} exceeds the context of {self.context_length}"
            )
        if len(req.stop) > MAX_STOP or any(
            not s or len(s.encode()) > MAX_STOP_BYTES for s in req.stop
        ):
            raise InvalidInputError(
                f"at most {MAX_STOP} stop sequences of 1..{MAX_STOP_BYTES} bytes"
            )


def _log_softmax_at(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """log softmax(logits[r])[tokens[r]] per row (float32 exp and pairwise sums, float64
    result; about 1e-7 from a float64 computation)."""
    top = logits.max(axis=1, keepdims=True)
    e = np.subtract(logits, top)
    np.exp(e, out=e)
    sums = e.sum(axis=1).astype(np.float64)
    picked = logits[np.arange(len(tokens)), tokens].astype(np.float64)
    out: np.ndarray = picked - top[:, 0].astype(np.float64) - np.log(sums)
    return out


class _Row:
    """Decoding state of one request.

    Step texts are attributed so that their concatenation is the result text: text that
    could still be the start of a stop sequence (or an incomplete UTF-8 character) is held
    back until the next step decides."""

    def __init__(self, adapter: LLMAdapter, req: LLMRequest) -> None:
        self.adapter = adapter
        self.req = req
        self.tokens: list[int] = []
        self.decoded = ""  # the text of the tokens so far
        self.emitted = 0  # characters of `decoded` already given to steps
        self.result = LLMResult()
        self.cum = 0.0
        self.done = False

    def _held(self) -> int:
        """Length of the longest end of `decoded` that begins a stop sequence."""
        best = 0
        for s in self.req.stop:
            for k in range(min(len(s) - 1, len(self.decoded)), best, -1):
                if self.decoded.endswith(s[:k]):
                    best = k
                    break
        return best

    def push(
        self,
        token: int,
        u: float,
        digest: bytes,
        logit: float,
        logprob: float,
    ) -> LLMStep:
        i = len(self.tokens)
        self.tokens.append(token)
        self.cum += logprob
        finish = ""
        final = ""
        if token in self.adapter.stop_tokens:
            finish, final = "eos", self.decoded
        else:
            full = self.adapter.decode(self.tokens)
            if not full.endswith("\ufffd") and full.startswith(self.decoded):
                self.decoded = full
            for s in self.req.stop:
                where = self.decoded.find(s)
                if where >= 0:
                    finish, final = "stop", self.decoded[:where]
                    break
            if not finish and len(self.tokens) >= self.req.sampling.max_tokens:
                finish, final = "length", self.decoded
        if finish:
            text = final[self.emitted :] if len(final) >= self.emitted else ""
            self.done = True
            self.result.finish_reason = finish
            self.result.text = final[: self.emitted] + text
        else:
            upto = len(self.decoded) - self._held()
            text = self.decoded[self.emitted : upto]
            self.emitted = max(self.emitted, upto)
        step = LLMStep(i, token, text, u, digest, logit, logprob, self.cum)
        self.result.steps.append(step)
        return step


def decode_batch(
    session: OrtSession,
    adapter: LLMAdapter,
    requests: list[LLMRequest],
    on_step: Callable[[int, LLMStep], None] | None = None,
) -> list[LLMResult]:
    """Generate for every request as one batch; results in request order."""
    return list(_run(session, adapter, requests, on_step))


def iter_single(
    session: OrtSession,
    adapter: LLMAdapter,
    req: LLMRequest,
) -> Iterator[LLMStep | LLMResult]:
    """One generation, yielding each step as it is sampled, then the result (streaming)."""
    steps: list[LLMStep] = []
    gen = _run(session, adapter, [req], lambda _r, s: steps.append(s), lazy=True)
    for item in gen:
        yield from steps
        steps.clear()
        if isinstance(item, LLMResult):
            yield item


def _run(
    session: OrtSession,
    adapter: LLMAdapter,
    requests: list[LLMRequest],
    on_step: Callable[[int, LLMStep], None] | None,
    lazy: bool = False,
) -> Iterator[Any]:
    for req in requests:
        adapter.check(req)
    rows = [_Row(adapter, r) for r in requests]
    batch = len(rows)
    if not batch:
        return
    longest = max(len(r.req.prompt_ids) for r in rows)
    ids = np.full((batch, longest), adapter.pad_token, dtype=np.int64)
    mask = np.zeros((batch, longest), dtype=np.int64)
    for b, r in enumerate(rows):
        n = len(r.req.prompt_ids)
        ids[b, longest - n :] = r.req.prompt_ids
        mask[b, longest - n :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    past = adapter.empty_past(batch)
    past_names, present_names = adapter.past_names(), adapter.present_names()
    active = list(range(batch))  # row index of each batch line
    out_names = ["logits", *present_names]
    while True:
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        feeds.update(zip(past_names, past, strict=True))
        outs = session.run(feeds, out_names)
        logits = np.asarray(outs[0], dtype=np.float32)
        past = outs[1:]
        picks = np.empty(len(active), dtype=np.int64)
        draws = []
        for line, r_index in enumerate(active):
            row = rows[r_index]
            u = draw(row.req.sampling.seed, len(row.tokens))
            draws.append(u)
            try:
                picks[line] = sample_vocab(logits[line], row.req.sampling, u)
            except InferenceError as exc:
                raise InferenceError(f"request {r_index} step {len(row.tokens)}: {exc}") from None
        logprobs = _log_softmax_at(logits, picks)
        for line, r_index in enumerate(active):
            row = rows[r_index]
            token = int(picks[line])
            step = row.push(
                token,
                draws[line],
                logits_sha256(logits[line]),
                float(logits[line, token]),
                float(logprobs[line]),
            )
            if on_step is not None:
                on_step(r_index, step)
        if lazy:
            yield None
        keep = [line for line, r_index in enumerate(active) if not rows[r_index].done]
        if not keep:
            break
        if len(keep) < len(active):
            sel = np.asarray(keep, dtype=np.int64)
            past = [p[sel] for p in past]
            mask, positions, picks = mask[sel], positions[sel], picks[sel]
            active = [active[line] for line in keep]
        ids = picks.reshape(-1, 1)
        positions = positions[:, -1:] + 1
        mask = np.concatenate([mask, np.ones((len(active), 1), dtype=np.int64)], axis=1)
    for r in rows:
        r.result.batch_size = batch
        yield r.result


def parse_stop(values: Any) -> tuple[str, ...]:
    """Stop sequences from a JSON value (list of strings)."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInputError("'stop' must be a string or a list of strings")
    return tuple(values)
