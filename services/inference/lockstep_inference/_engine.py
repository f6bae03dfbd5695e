"""The inference engine: repository + cache + sessions, independent of the gRPC layer."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from lockstep.inference.v1 import inference_pb2 as pb
from lockstep_inference._adapters import CharLMAdapter, EmbeddingAdapter, adapter_for
from lockstep_inference._cache import CacheEntry, ModelCache
from lockstep_inference._config import InferenceConfig
from lockstep_inference._dtypes import kserve_of_numpy, numpy_of_kserve
from lockstep_inference._errors import (
    InferenceError,
    InvalidInputError,
    ReplayMismatchError,
    TensorTooLargeError,
    VersionMismatchError,
)
from lockstep_inference._repository import ModelFiles, ModelRepository, check_name
from lockstep_inference._sampling import (
    Sampling,
    draw,
    logits_sha256,
    sample,
    seed_from_key,
)
from lockstep_inference._session import OrtSession

__all__ = ["InferenceEngine", "TensorIn"]

log = logging.getLogger("lockstep.inference")

_AGENT_JSON_KEYS = frozenset({"prompt", "max_tokens", "temperature", "top_k", "top_p", "seed"})


@dataclass(frozen=True)
class TensorIn:
    """An input tensor as received: either raw little-endian bytes or an array."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | np.ndarray


class InferenceEngine:
    """Everything the gRPC servicers call; thread-safe."""

    def __init__(self, config: InferenceConfig) -> None:
        self.config = config
        self.repository = ModelRepository(config.model_repository)
        self.cache = ModelCache(config.cache_budget_bytes, self._load, self.repository.file_size,
                                busy_wait_s=config.cache_busy_wait_s)

    # -- loading ---------------------------------------------------------------------------

    def _load(self, name: str) -> tuple[ModelFiles, OrtSession, Any, int]:
        files = self.repository.read(name)
        session = OrtSession(files.model_bytes, self.config, name)
        try:
            adapter = adapter_for(files)
        except Exception:
            session.close()
            raise
        size = len(files.model_bytes)
        charged = size if self.config.memory_charge == "file" else max(size, session.rss_delta)
        # The cache keeps the version, not the bytes (the session has its own copy).
        files = dataclasses.replace(files, model_bytes=b"")
        log.info("loaded model %s %s on %s (charged %d bytes)", name, files.version,
                 session.provider, charged)
        return files, session, adapter, charged

    def load(self, name: str) -> CacheEntry:
        """Load (or reload when the file changed) a model."""
        check_name(name)
        return self.cache.load(name, reload=True)

    def unload(self, name: str) -> tuple[bool, int]:
        """Unload a model."""
        check_name(name)
        return self.cache.unload(name)

    def model_names(self) -> list[str]:
        """Models in the repository or the cache, sorted."""
        return sorted(set(self.repository.names()) | {e.name for e in self.cache.entries()})

    def run_info(self, entry: CacheEntry | None) -> pb.RunInfo:
        """RunInfo of a loaded model (or of the server when None)."""
        return pb.RunInfo(
            provider=entry.session.provider if entry else "",
            requested_provider=self.config.provider,
            fallback_reason=entry.session.fallback_reason if entry else "",
            onnxruntime_version=ort.__version__,
            settings=self.config.settings_text,
        )

    def use(self, name: str) -> Any:
        """Context manager holding a loaded model for one request."""
        check_name(name)
        return self.cache.use(name, autoload=self.config.autoload)

    # -- tensors ---------------------------------------------------------------------------

    def feeds(self, entry: CacheEntry, tensors: list[TensorIn]) -> dict[str, np.ndarray]:
        """Validate tensors against the model's declared inputs and build the feeds."""
        declared = {s.name: s for s in entry.session.inputs}
        feeds: dict[str, np.ndarray] = {}
        for t in tensors:
            spec = declared.get(t.name)
            if spec is None:
                raise InvalidInputError(f"model {entry.name!r} has no input {t.name!r} "
                                        f"(inputs: {', '.join(declared)})")
            if t.name in feeds:
                raise InvalidInputError(f"input {t.name!r} given twice")
            if t.datatype != spec.datatype:
                raise InvalidInputError(f"input {t.name!r}: datatype {t.datatype} given, model "
                                        f"expects {spec.datatype}")
            dtype = numpy_of_kserve(t.datatype)
            if len(t.shape) != len(spec.shape):
                raise InvalidInputError(f"input {t.name!r}: shape {list(t.shape)} has rank "
                                        f"{len(t.shape)}, model expects {list(spec.shape)}")
            for axis, (got, want) in enumerate(zip(t.shape, spec.shape, strict=True)):
                if got < 0:
                    raise InvalidInputError(f"input {t.name!r}: negative dimension {got}")
                if want >= 0 and got != want:
                    raise InvalidInputError(f"input {t.name!r}: dimension {axis} is {got}, model "
                                            f"expects {want} (shape {list(spec.shape)})")
            count = math.prod(t.shape)
            nbytes = count * dtype.itemsize
            if nbytes > self.config.max_tensor_bytes:
                raise TensorTooLargeError(f"input {t.name!r}: {nbytes} bytes is above the "
                                          f"limit of {self.config.max_tensor_bytes} bytes")
            if isinstance(t.data, np.ndarray):
                arr = t.data
                if arr.size != count:
                    raise InvalidInputError(f"input {t.name!r}: {arr.size} elements given, "
                                            f"shape {list(t.shape)} needs {count}")
                arr = arr.astype(dtype.newbyteorder("="), copy=False).reshape(t.shape)
            else:
                if len(t.data) != nbytes:
                    raise InvalidInputError(f"input {t.name!r}: {len(t.data)} bytes given, "
                                            f"shape {list(t.shape)} of {t.datatype} needs "
                                            f"{nbytes}")
                arr = np.frombuffer(t.data, dtype=dtype).astype(dtype.newbyteorder("="))
                arr = arr.reshape(t.shape)
            feeds[t.name] = arr
        missing = [n for n in declared if n not in feeds]
        if missing:
            raise InvalidInputError(f"model {entry.name!r}: missing inputs {', '.join(missing)}")
        return feeds

    def infer(self, model: str, tensors: list[TensorIn], output_names: list[str],
              expected_version: str = "",
              ) -> tuple[CacheEntry, list[tuple[str, np.ndarray]]]:
        """Run a model on validated tensors; outputs in requested (or graph) order."""
        with self.use(model) as entry:
            if expected_version and expected_version != entry.version:
                raise VersionMismatchError(f"model {model!r} is {entry.version}, request "
                                           f"expects {expected_version}")
            known = [s.name for s in entry.session.outputs]
            names = list(output_names) or known
            for n in names:
                if n not in known:
                    raise InvalidInputError(f"model {model!r} has no output {n!r} "
                                            f"(outputs: {', '.join(known)})")
            if len(set(names)) != len(names):
                raise InvalidInputError("an output is requested twice")
            feeds = self.feeds(entry, tensors)
            outs = entry.session.run(feeds, names)
            return entry, list(zip(names, outs, strict=True))

    # -- generation ------------------------------------------------------------------------

    def sampling(self, params: pb.SamplingParams | None) -> Sampling:
        """Validated sampling parameters, defaults filled in."""
        p = params or pb.SamplingParams()
        max_tokens = p.max_tokens or self.config.default_generate_tokens
        if max_tokens > self.config.max_generate_tokens:
            raise InvalidInputError(f"max_tokens {max_tokens} is above the limit of "
                                    f"{self.config.max_generate_tokens}")
        return Sampling(max_tokens=max_tokens, temperature=p.temperature, top_k=p.top_k,
                        top_p=p.top_p, seed=p.seed)

    @staticmethod
    def _char_lm(entry: CacheEntry) -> CharLMAdapter:
        if not isinstance(entry.adapter, CharLMAdapter):
            raise InvalidInputError(f"model {entry.name!r} is of kind {entry.files.kind!r}; "
                                    "generation needs a 'char_lm' model")
        return entry.adapter

    def generate_iter(self, model: str, prompt: str, params: pb.SamplingParams | None,
                      ) -> Iterator[pb.GenerationStep | pb.GenerateResponse]:
        """Yield each step as it is sampled, then the full response."""
        sampling = self.sampling(params)
        with self.use(model) as entry:
            lm = self._char_lm(entry)
            context = lm.encode(prompt)
            steps: list[pb.GenerationStep] = []
            finish = "length"
            for i in range(sampling.max_tokens):
                logits = lm.logits(entry.session, context)
                u = draw(sampling.seed, i)
                try:
                    token = sample(logits, sampling, u)
                except InferenceError as exc:
                    raise InferenceError(f"model {model!r} step {i}: {exc}") from None
                step = pb.GenerationStep(index=i, token=token, text=lm.text_of(token), draw=u,
                                         logits_sha256=logits_sha256(logits))
                steps.append(step)
                yield step
                if token == lm.eos_token:
                    finish = "eos"
                    break
                context.append(token)
            log_msg = pb.GenerationLog(
                model=model, model_version=entry.version, prompt=prompt,
                params=pb.SamplingParams(max_tokens=sampling.max_tokens,
                                         temperature=sampling.temperature,
                                         top_k=sampling.top_k, top_p=sampling.top_p,
                                         seed=sampling.seed),
                steps=steps, finish_reason=finish, run_info=self.run_info(entry))
            yield _response(log_msg, replayed=False)

    def generate(self, model: str, prompt: str, params: pb.SamplingParams | None,
                 ) -> pb.GenerateResponse:
        """Generate and return the full response."""
        last: Any = None
        for item in self.generate_iter(model, prompt, params):
            last = item
        assert isinstance(last, pb.GenerateResponse)
        return last

    def replay(self, log_msg: pb.GenerationLog, verify: bool) -> pb.GenerateResponse:
        """Tokens of a log, without running the model; `verify` reruns and compares."""
        sampling = Sampling(max_tokens=max(1, log_msg.params.max_tokens),
                            temperature=log_msg.params.temperature, top_k=log_msg.params.top_k,
                            top_p=log_msg.params.top_p, seed=log_msg.params.seed)
        if not log_msg.steps:
            raise InvalidInputError("generation log has no steps")
        if len(log_msg.steps) > sampling.max_tokens:
            raise InvalidInputError(f"generation log has {len(log_msg.steps)} steps, more than "
                                    f"its max_tokens {sampling.max_tokens}")
        for i, step in enumerate(log_msg.steps):
            if step.index != i:
                raise InvalidInputError(f"generation log step {i} has index {step.index}")
            # The draws follow from the seed alone, so they are checked even without the model.
            if step.draw != draw(sampling.seed, i):
                raise ReplayMismatchError(f"step {i}: logged draw {step.draw!r} is not the draw "
                                          f"of seed {sampling.seed} ({draw(sampling.seed, i)!r})")
        if verify:
            self._verify(log_msg, sampling)
        return _response(log_msg, replayed=True)

    def _verify(self, log_msg: pb.GenerationLog, sampling: Sampling) -> None:
        with self.use(log_msg.model) as entry:
            if entry.version != log_msg.model_version:
                raise VersionMismatchError(f"model {log_msg.model!r} is {entry.version}, the "
                                           f"log was made with {log_msg.model_version}")
            lm = self._char_lm(entry)
            context = lm.encode(log_msg.prompt)
            for i, step in enumerate(log_msg.steps):
                logits = lm.logits(entry.session, context)
                digest = logits_sha256(logits)
                if digest != step.logits_sha256:
                    raise ReplayMismatchError(
                        f"step {i}: logits hash {digest.hex()[:16]}... differs from the "
                        f"logged {bytes(step.logits_sha256).hex()[:16]}... (provider "
                        f"{entry.session.provider}, logged {log_msg.run_info.provider})")
                token = sample(logits, sampling, step.draw)
                if token != step.token:
                    raise ReplayMismatchError(f"step {i}: sampled token {token}, the log has "
                                              f"{step.token}")
                context.append(token)

    # -- agents ----------------------------------------------------------------------------

    def agent_batch(self, requests: list[pb.AgentInferRequest]) -> list[pb.AgentInferResult]:
        """Answer a tick's agent requests in order; failures are per request."""
        if len(requests) > self.config.max_batch_requests:
            raise TensorTooLargeError(f"{len(requests)} requests in one batch, the limit is "
                                      f"{self.config.max_batch_requests}")
        seen: set[str] = set()
        for req in requests:
            if not req.key:
                raise InvalidInputError("every agent request needs a non-empty key")
            if req.key in seen:
                raise InvalidInputError(f"duplicate request key {req.key!r}")
            seen.add(req.key)
        results = []
        for req in requests:
            try:
                results.append(self._agent_one(req))
            except InferenceError as exc:
                entry = self.cache.get(req.model) if req.model else None
                results.append(pb.AgentInferResult(
                    key=req.key, error=str(exc), error_code=exc.code.name,
                    model_version=entry.version if entry else "",
                ))
            except Exception as exc:  # one broken request must not fail the whole tick
                log.exception("agent request %r on model %r failed", req.key, req.model)
                results.append(pb.AgentInferResult(
                    key=req.key, error=f"internal error: {type(exc).__name__}: {exc}",
                    error_code="INTERNAL"))
        return results

    def _agent_one(self, req: pb.AgentInferRequest) -> pb.AgentInferResult:
        if len(req.input) > self.config.max_tensor_bytes:
            raise TensorTooLargeError(f"input of {len(req.input)} bytes is above the limit of "
                                      f"{self.config.max_tensor_bytes} bytes")
        with self.use(req.model) as entry:
            adapter = entry.adapter
            base = {"key": req.key, "provider": entry.session.provider,
                    "model_version": entry.version}
            if isinstance(adapter, EmbeddingAdapter):
                text = _utf8(req.input)
                vec = adapter.embed(entry.session, text)
                return pb.AgentInferResult(output=vec.astype("<f4").tobytes(), **base)
            if isinstance(adapter, CharLMAdapter):
                prompt, params = _agent_generation(req, self.config.default_generate_tokens)
                model = req.model
        if isinstance(adapter, CharLMAdapter):
            resp = self.generate(model, prompt, params)
            return pb.AgentInferResult(output=resp.text.encode("utf-8"), generation=resp.log,
                                       key=req.key, provider=resp.log.run_info.provider,
                                       model_version=resp.log.model_version)
        return self._agent_tensor(req)

    def _agent_tensor(self, req: pb.AgentInferRequest) -> pb.AgentInferResult:
        with self.use(req.model) as entry:
            ins, outs = entry.session.inputs, entry.session.outputs
            if len(ins) != 1 or not outs:
                raise InvalidInputError(f"model {req.model!r} has {len(ins)} inputs; the agent "
                                        "convention for tensor models needs exactly one")
            spec = ins[0]
            dtype = numpy_of_kserve(spec.datatype)
            if len(req.input) % dtype.itemsize:
                raise InvalidInputError(f"input of {len(req.input)} bytes is not a whole number "
                                        f"of {spec.datatype} elements")
            n = len(req.input) // dtype.itemsize
            free = [i for i, d in enumerate(spec.shape) if d < 0]
            fixed = math.prod(d for d in spec.shape if d >= 0)
            shape = list(spec.shape)
            if free:
                # The first free dimension takes the remaining elements, the others are 1.
                for i in free:
                    shape[i] = 1
                if fixed == 0 or n % fixed:
                    raise InvalidInputError(f"{n} elements do not fit shape {list(spec.shape)}")
                shape[free[0]] = n // fixed
            tensor = TensorIn(spec.name, spec.datatype, tuple(shape), req.input)
            (out,) = entry.session.run(self.feeds(entry, [tensor]), [outs[0].name])
            kserve_of_numpy(out.dtype)  # string/object outputs have no byte convention
            data = np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("<")).tobytes()
            return pb.AgentInferResult(key=req.key, output=data,
                                       provider=entry.session.provider,
                                       model_version=entry.version)

    def close(self) -> None:
        """Close every session."""
        self.cache.close()


def _response(log_msg: pb.GenerationLog, *, replayed: bool) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        text="".join(s.text for s in log_msg.steps),
        tokens=[s.token for s in log_msg.steps], log=log_msg, replayed=replayed)


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"input is not valid UTF-8 (byte {exc.start})") from None


def _agent_generation(req: pb.AgentInferRequest, default_tokens: int,
                      ) -> tuple[str, pb.SamplingParams]:
    """Agent char_lm input: JSON object or plain text; seed from the key when absent."""
    text = _utf8(req.input)
    fields: dict[str, Any] = {}
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"input looks like JSON but does not parse: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInputError("JSON input must be an object")
        unknown = sorted(set(raw) - _AGENT_JSON_KEYS)
        if unknown:
            raise InvalidInputError(f"unknown JSON keys {unknown} (allowed: "
                                    f"{sorted(_AGENT_JSON_KEYS)})")
        fields = raw
    else:
        fields = {"prompt": text}
    prompt = fields.get("prompt", "")
    if not isinstance(prompt, str):
        raise InvalidInputError("'prompt' must be a string")

    def num(key: str, default: float, upper: int = 0) -> Any:
        value = fields.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInputError(f"{key!r} must be a number")
        if not math.isfinite(value):
            raise InvalidInputError(f"{key!r} must be finite")
        if not upper:
            return float(value)
        if not float(value).is_integer() or not 0 <= value <= upper:
            raise InvalidInputError(f"{key!r} must be an integer in [0, {upper}]")
        return int(value)

    seed = num("seed", 0, 2**64 - 1) if "seed" in fields else seed_from_key(req.key)
    params = pb.SamplingParams(
        max_tokens=num("max_tokens", default_tokens, 2**32 - 1),
        temperature=num("temperature", 1.0), top_k=num("top_k", 0, 2**32 - 1),
        top_p=num("top_p", 1.0), seed=seed)
    return prompt, params
