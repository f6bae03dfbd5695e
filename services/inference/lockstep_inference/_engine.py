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

from lockstep.pb.inference.v1 import inference_pb2 as pb
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
from lockstep_inference._llm import LLMAdapter, LLMRequest, LLMResult, LLMStep, parse_stop
from lockstep_inference._llm import decode_batch as llm_decode_batch
from lockstep_inference._llm import iter_single as llm_iter_single
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
_AGENT_LLM_KEYS = _AGENT_JSON_KEYS | {"messages", "stop"}
#: Sampling defaults of agent llm requests (a 135M model needs a truncated distribution).
LLM_AGENT_DEFAULTS = {"max_tokens": 48, "temperature": 0.7, "top_k": 50, "top_p": 0.9}
#: Tolerance on the sampled token's logit when `verify` reruns an llm generation that was
#: decoded in a batch of another size (bits are only promised for the same batch).
LLM_VERIFY_LOGIT_TOL = 1e-3


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
        self.cache = ModelCache(
            config.cache_budget_bytes,
            self._load,
            self.repository.file_size,
            busy_wait_s=config.cache_busy_wait_s,
        )

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
        log.info(
            "loaded model %s %s on %s (charged %d bytes)",
            name,
            files.version,
            session.provider,
            charged,
        )
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
                raise InvalidInputError(
                    f"model {entry.name!r} has no input {t.name!r} (inputs: {', '.join(declared)})"
                )
            if t.name in feeds:
                raise InvalidInputError(f"input {t.name!r} given twice")
            if t.datatype != spec.datatype:
                raise InvalidInputError(
                    f"input {t.name!r}: datatype {t.datatype} given, model expects {spec.datatype}"
                )
            dtype = numpy_of_kserve(t.datatype)
            if len(t.shape) != len(spec.shape):
                raise InvalidInputError(
                    f"input {t.name!r}: shape {list(t.shape)} has rank "
                    f"{len(t.shape)}, model expects {list(spec.shape)}"
                )
            for axis, (got, want) in enumerate(zip(t.shape, spec.shape, strict=True)):
                if got < 0:
                    raise InvalidInputError(f"input {t.name!r}: negative dimension {got}")
                if want >= 0 and got != want:
                    raise InvalidInputError(
                        f"input {t.name!r}: dimension {axis} is {got}, model "
                        f"expects {want} (shape {list(spec.shape)})"
                    )
            count = math.prod(t.shape)
            nbytes = count * dtype.itemsize
            if nbytes > self.config.max_tensor_bytes:
                raise TensorTooLargeError(
                    f"input {t.name!r}: {nbytes} bytes is above the "
                    f"limit of {self.config.max_tensor_bytes} bytes"
                )
            if isinstance(t.data, np.ndarray):
                arr = t.data
                if arr.size != count:
                    raise InvalidInputError(
                        f"input {t.name!r}: {arr.size} elements given, "
                        f"shape {list(t.shape)} needs {count}"
                    )
                arr = arr.astype(dtype.newbyteorder("="), copy=False).reshape(t.shape)
            else:
                if len(t.data) != nbytes:
                    raise InvalidInputError(
                        f"input {t.name!r}: {len(t.data)} bytes given, "
                        f"shape {list(t.shape)} of {t.datatype} needs "
                        f"{nbytes}"
                    )
                arr = np.frombuffer(t.data, dtype=dtype).astype(dtype.newbyteorder("="))
                arr = arr.reshape(t.shape)
            feeds[t.name] = arr
        missing = [n for n in declared if n not in feeds]
        if missing:
            raise InvalidInputError(f"model {entry.name!r}: missing inputs {', '.join(missing)}")
        return feeds

    def infer(
        self,
        model: str,
        tensors: list[TensorIn],
        output_names: list[str],
        expected_version: str = "",
    ) -> tuple[CacheEntry, list[tuple[str, np.ndarray]]]:
        """Run a model on validated tensors; outputs in requested (or graph) order."""
        with self.use(model) as entry:
            if expected_version and expected_version != entry.version:
                raise VersionMismatchError(
                    f"model {model!r} is {entry.version}, request expects {expected_version}"
                )
            known = [s.name for s in entry.session.outputs]
            names = list(output_names) or known
            for n in names:
                if n not in known:
                    raise InvalidInputError(
                        f"model {model!r} has no output {n!r} (outputs: {', '.join(known)})"
                    )
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
            raise InvalidInputError(
                f"max_tokens {max_tokens} is above the limit of {self.config.max_generate_tokens}"
            )
        return Sampling(
            max_tokens=max_tokens,
            temperature=p.temperature,
            top_k=p.top_k,
            top_p=p.top_p,
            seed=p.seed,
        )

    # -- llm -------------------------------------------------------------------------------

    def llm_request(
        self,
        lm: LLMAdapter,
        prompt: str,
        params: pb.SamplingParams | None,
        messages: list[tuple[str, str]] | None = None,
        chat: bool = False,
    ) -> LLMRequest:
        """A validated llm request: raw prompt, or chat messages rendered by the template."""
        sampling = self.sampling(params)
        stop = tuple(params.stop) if params is not None else ()
        msgs = list(messages or [])
        if msgs and prompt:
            raise InvalidInputError("give either a prompt or chat messages, not both")
        if chat and not msgs:
            msgs = [("user", prompt)]
        text = lm.render(msgs) if msgs else prompt
        req = LLMRequest(
            prompt=text,
            prompt_ids=lm.encode(text),
            sampling=sampling,
            stop=stop,
            messages=tuple(msgs),
        )
        lm.check(req)
        return req

    def _llm_log(
        self,
        model: str,
        entry: CacheEntry,
        req: LLMRequest,
        res: LLMResult,
    ) -> pb.GenerationLog:
        s = req.sampling
        return pb.GenerationLog(
            model=model,
            model_version=entry.version,
            prompt=req.prompt,
            params=pb.SamplingParams(
                max_tokens=s.max_tokens,
                temperature=s.temperature,
                top_k=s.top_k,
                top_p=s.top_p,
                seed=s.seed,
                stop=list(req.stop),
            ),
            steps=[_pb_step(st) for st in res.steps],
            finish_reason=res.finish_reason,
            run_info=self.run_info(entry),
            messages=[pb.ChatMessage(role=r, content=c) for r, c in req.messages],
            prompt_tokens=len(req.prompt_ids),
            batch_size=res.batch_size,
        )

    def llm_batch(
        self,
        model: str,
        items: list[tuple[str, pb.SamplingParams, list[tuple[str, str]]]],
    ) -> list[pb.GenerateResponse | InferenceError]:
        """Generations on one llm model, decoded in batches of max_llm_batch (request
        order); a request that fails validation gets its error and leaves the batch."""
        with self.use(model) as entry:
            lm = self._llm(entry)
            out: list[pb.GenerateResponse | InferenceError] = []
            reqs: list[tuple[int, LLMRequest]] = []
            for prompt, params, msgs in items:
                try:
                    reqs.append((len(out), self.llm_request(lm, prompt, params, msgs)))
                    out.append(InferenceError("pending"))
                except InferenceError as exc:
                    out.append(exc)
            size = self.config.max_llm_batch
            for start in range(0, len(reqs), size):
                chunk = reqs[start : start + size]
                results = llm_decode_batch(entry.session, lm, [r for _, r in chunk])
                for (i, req), res in zip(chunk, results, strict=True):
                    out[i] = _response(self._llm_log(model, entry, req, res), replayed=False)
            return out

    @staticmethod
    def _llm(entry: CacheEntry) -> LLMAdapter:
        if not isinstance(entry.adapter, LLMAdapter):
            raise InvalidInputError(
                f"model {entry.name!r} is of kind {entry.files.kind!r}, not 'llm'"
            )
        return entry.adapter

    @staticmethod
    def _char_lm(entry: CacheEntry) -> CharLMAdapter:
        if not isinstance(entry.adapter, CharLMAdapter):
            raise InvalidInputError(
                f"model {entry.name!r} is of kind {entry.files.kind!r}; "
                "generation needs a 'char_lm' model"
            )
        return entry.adapter

    def generate_iter(
        self,
        model: str,
        prompt: str,
        params: pb.SamplingParams | None,
        messages: list[tuple[str, str]] | None = None,
        chat: bool = False,
    ) -> Iterator[pb.GenerationStep | pb.GenerateResponse]:
        """Yield each step as it is sampled, then the full response."""
        sampling = self.sampling(params)
        with self.use(model) as entry:
            if isinstance(entry.adapter, LLMAdapter):
                req = self.llm_request(entry.adapter, prompt, params, messages, chat)
                for item in llm_iter_single(entry.session, entry.adapter, req):
                    if isinstance(item, LLMStep):
                        yield _pb_step(item)
                    else:
                        yield _response(self._llm_log(model, entry, req, item), replayed=False)
                return
            if messages:
                raise InvalidInputError(
                    f"model {model!r} is of kind {entry.files.kind!r}: "
                    "chat messages need an 'llm' model"
                )
            if params is not None and params.stop:
                raise InvalidInputError("stop sequences need an 'llm' model")
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
                step = pb.GenerationStep(
                    index=i,
                    token=token,
                    text=lm.text_of(token),
                    draw=u,
                    logits_sha256=logits_sha256(logits),
                )
                steps.append(step)
                yield step
                if token == lm.eos_token:
                    finish = "eos"
                    break
                context.append(token)
            log_msg = pb.GenerationLog(
                model=model,
                model_version=entry.version,
                prompt=prompt,
                params=pb.SamplingParams(
                    max_tokens=sampling.max_tokens,
                    temperature=sampling.temperature,
                    top_k=sampling.top_k,
                    top_p=sampling.top_p,
                    seed=sampling.seed,
                ),
                steps=steps,
                finish_reason=finish,
                run_info=self.run_info(entry),
            )
            yield _response(log_msg, replayed=False)

    def generate(
        self,
        model: str,
        prompt: str,
        params: pb.SamplingParams | None,
        messages: list[tuple[str, str]] | None = None,
        chat: bool = False,
    ) -> pb.GenerateResponse:
        """Generate and return the full response."""
        last: Any = None
        for item in self.generate_iter(model, prompt, params, messages, chat):
            last = item
        assert isinstance(last, pb.GenerateResponse)
        return last

    def replay(self, log_msg: pb.GenerationLog, verify: bool) -> pb.GenerateResponse:
        """Tokens of a log, without running the model; `verify` reruns and compares."""
        sampling = Sampling(
            max_tokens=max(1, log_msg.params.max_tokens),
            temperature=log_msg.params.temperature,
            top_k=log_msg.params.top_k,
            top_p=log_msg.params.top_p,
            seed=log_msg.params.seed,
        )
        if not log_msg.steps:
            raise InvalidInputError("generation log has no steps")
        if len(log_msg.steps) > sampling.max_tokens:
            raise InvalidInputError(
                f"generation log has {len(log_msg.steps)} steps, more than "
                f"its max_tokens {sampling.max_tokens}"
            )
        for i, step in enumerate(log_msg.steps):
            if step.index != i:
                raise InvalidInputError(f"generation log step {i} has index {step.index}")
            # The draws follow from the seed alone, so they are checked even without the model.
            if step.draw != draw(sampling.seed, i):
                raise ReplayMismatchError(
                    f"step {i}: logged draw {step.draw!r} is not the draw "
                    f"of seed {sampling.seed} ({draw(sampling.seed, i)!r})"
                )
        if verify:
            self._verify(log_msg, sampling)
        return _response(log_msg, replayed=True)

    def _verify(self, log_msg: pb.GenerationLog, sampling: Sampling) -> None:
        with self.use(log_msg.model) as entry:
            if entry.version != log_msg.model_version:
                raise VersionMismatchError(
                    f"model {log_msg.model!r} is {entry.version}, the "
                    f"log was made with {log_msg.model_version}"
                )
            if isinstance(entry.adapter, LLMAdapter):
                self._verify_llm(entry, log_msg, sampling)
                return
            lm = self._char_lm(entry)
            context = lm.encode(log_msg.prompt)
            for i, step in enumerate(log_msg.steps):
                logits = lm.logits(entry.session, context)
                digest = logits_sha256(logits)
                if digest != step.logits_sha256:
                    raise ReplayMismatchError(
                        f"step {i}: logits hash {digest.hex()[:16]}... differs from the "
                        f"logged {bytes(step.logits_sha256).hex()[:16]}... (provider "
                        f"{entry.session.provider}, logged {log_msg.run_info.provider})"
                    )
                token = sample(logits, sampling, step.draw)
                if token != step.token:
                    raise ReplayMismatchError(
                        f"step {i}: sampled token {token}, the log has {step.token}"
                    )
                context.append(token)

    def _verify_llm(self, entry: CacheEntry, log_msg: pb.GenerationLog, sampling: Sampling) -> None:
        """Rerun alone: every token must match; logits hashes too when the log's batch was
        of one, else the sampled token's logit within LLM_VERIFY_LOGIT_TOL."""
        lm = self._llm(entry)
        req = LLMRequest(
            prompt=log_msg.prompt,
            prompt_ids=lm.encode(log_msg.prompt),
            sampling=sampling,
            stop=tuple(log_msg.params.stop),
        )
        (res,) = llm_decode_batch(entry.session, lm, [req])
        exact = log_msg.batch_size <= 1 and entry.session.provider == log_msg.run_info.provider
        for i, step in enumerate(log_msg.steps):
            if i >= len(res.steps):
                raise ReplayMismatchError(
                    f"step {i}: the rerun stopped after {len(res.steps)} steps"
                )
            got = res.steps[i]
            if exact and got.logits_sha256 != step.logits_sha256:
                raise ReplayMismatchError(
                    f"step {i}: logits hash {got.logits_sha256.hex()[:16]}... differs from the "
                    f"logged {bytes(step.logits_sha256).hex()[:16]}..."
                )
            if not exact and abs(got.logit - step.logit) > LLM_VERIFY_LOGIT_TOL:
                raise ReplayMismatchError(
                    f"step {i}: logit {got.logit} of the sampled token "
                    f"differs from the logged {step.logit}"
                )
            if got.token != step.token:
                raise ReplayMismatchError(
                    f"step {i}: sampled token {got.token}, the log has {step.token}"
                )
        if len(res.steps) != len(log_msg.steps):
            raise ReplayMismatchError(
                f"the rerun has {len(res.steps)} steps, the log {len(log_msg.steps)}"
            )

    # -- agents ----------------------------------------------------------------------------

    def agent_batch(self, requests: list[pb.AgentInferRequest]) -> list[pb.AgentInferResult]:
        """Answer a tick's agent requests in order; failures are per request."""
        if len(requests) > self.config.max_batch_requests:
            raise TensorTooLargeError(
                f"{len(requests)} requests in one batch, the limit is "
                f"{self.config.max_batch_requests}"
            )
        seen: set[str] = set()
        for req in requests:
            if not req.key:
                raise InvalidInputError("every agent request needs a non-empty key")
            if req.key in seen:
                raise InvalidInputError(f"duplicate request key {req.key!r}")
            seen.add(req.key)
        llm_results = self._agent_llm(requests)
        results = []
        for i, req in enumerate(requests):
            if i in llm_results:
                results.append(llm_results[i])
                continue
            try:
                results.append(self._agent_one(req))
            except InferenceError as exc:
                entry = self.cache.get(req.model) if req.model else None
                results.append(
                    pb.AgentInferResult(
                        key=req.key,
                        error=str(exc),
                        error_code=exc.code,
                        model_version=entry.version if entry else "",
                    )
                )
            except Exception as exc:  # one broken request must not fail the whole tick
                log.exception("agent request %r on model %r failed", req.key, req.model)
                results.append(
                    pb.AgentInferResult(
                        key=req.key,
                        error=f"internal error: {type(exc).__name__}: {exc}",
                        error_code="INTERNAL",
                    )
                )
        return results

    def _agent_llm(self, requests: list[pb.AgentInferRequest]) -> dict[int, pb.AgentInferResult]:
        """The tick's requests on llm models: one batch per model (in order of first use),
        request order within it. Other requests are left to _agent_one."""
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            try:
                check_name(req.model)
                if self.repository.read_spec_kind(req.model) == "llm":
                    groups.setdefault(req.model, []).append(i)
            except InferenceError:
                continue  # _agent_one reports it
        out: dict[int, pb.AgentInferResult] = {}
        for model, indices in groups.items():
            items: list[tuple[str, pb.SamplingParams, list[tuple[str, str]]]] = []
            parsed: list[int] = []
            for i in indices:
                try:
                    items.append(_agent_llm_input(requests[i], self.config.max_generate_tokens))
                    parsed.append(i)
                except InferenceError as exc:
                    out[i] = pb.AgentInferResult(
                        key=requests[i].key, error=str(exc), error_code=exc.code
                    )
            if not items:
                continue
            try:
                answers = self.llm_batch(model, items)
            except InferenceError as exc:
                for i in parsed:
                    out[i] = pb.AgentInferResult(
                        key=requests[i].key, error=str(exc), error_code=exc.code
                    )
                continue
            except Exception as exc:  # one broken batch must not fail the whole tick
                log.exception("llm batch on model %r failed", model)
                for i in parsed:
                    out[i] = pb.AgentInferResult(
                        key=requests[i].key,
                        error=f"internal error: {type(exc).__name__}: {exc}",
                        error_code="INTERNAL",
                    )
                continue
            for i, ans in zip(parsed, answers, strict=True):
                if isinstance(ans, InferenceError):
                    out[i] = pb.AgentInferResult(
                        key=requests[i].key, error=str(ans), error_code=ans.code
                    )
                else:
                    out[i] = pb.AgentInferResult(
                        key=requests[i].key,
                        output=ans.text.encode("utf-8"),
                        generation=ans.log,
                        provider=ans.log.run_info.provider,
                        model_version=ans.log.model_version,
                    )
        return out

    def _agent_one(self, req: pb.AgentInferRequest) -> pb.AgentInferResult:
        if len(req.input) > self.config.max_tensor_bytes:
            raise TensorTooLargeError(
                f"input of {len(req.input)} bytes is above the limit of "
                f"{self.config.max_tensor_bytes} bytes"
            )
        with self.use(req.model) as entry:
            adapter = entry.adapter
            base = {
                "key": req.key,
                "provider": entry.session.provider,
                "model_version": entry.version,
            }
            if isinstance(adapter, EmbeddingAdapter):
                text = _utf8(req.input)
                vec = adapter.embed(entry.session, text)
                return pb.AgentInferResult(output=vec.astype("<f4").tobytes(), **base)
            if isinstance(adapter, CharLMAdapter):
                prompt, params = _agent_generation(req, self.config.default_generate_tokens)
                model = req.model
        if isinstance(adapter, CharLMAdapter):
            resp = self.generate(model, prompt, params)
            return pb.AgentInferResult(
                output=resp.text.encode("utf-8"),
                generation=resp.log,
                key=req.key,
                provider=resp.log.run_info.provider,
                model_version=resp.log.model_version,
            )
        return self._agent_tensor(req)

    def _agent_tensor(self, req: pb.AgentInferRequest) -> pb.AgentInferResult:
        with self.use(req.model) as entry:
            ins, outs = entry.session.inputs, entry.session.outputs
            if len(ins) != 1 or not outs:
                raise InvalidInputError(
                    f"model {req.model!r} has {len(ins)} inputs; the agent "
                    "convention for tensor models needs exactly one"
                )
            spec = ins[0]
            dtype = numpy_of_kserve(spec.datatype)
            if len(req.input) % dtype.itemsize:
                raise InvalidInputError(
                    f"input of {len(req.input)} bytes is not a whole number "
                    f"of {spec.datatype} elements"
                )
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
            return pb.AgentInferResult(
                key=req.key,
                output=data,
                provider=entry.session.provider,
                model_version=entry.version,
            )

    def close(self) -> None:
        """Close every session."""
        self.cache.close()


def _response(log_msg: pb.GenerationLog, *, replayed: bool) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        text="".join(s.text for s in log_msg.steps),
        tokens=[s.token for s in log_msg.steps],
        log=log_msg,
        replayed=replayed,
    )


def _pb_step(st: LLMStep) -> pb.GenerationStep:
    return pb.GenerationStep(
        index=st.index,
        token=st.token,
        text=st.text,
        draw=st.draw,
        logits_sha256=st.logits_sha256,
        logit=st.logit,
        logprob=st.logprob,
        cumulative_logprob=st.cumulative_logprob,
    )


def _agent_llm_input(
    req: pb.AgentInferRequest,
    max_tokens: int,
) -> tuple[str, pb.SamplingParams, list[tuple[str, str]]]:
    """Agent llm input: plain text = one user message; or a JSON object with "messages"
    (a list of {"role", "content"}) or "prompt" (raw, no template), the sampling keys and
    "stop". Defaults: LLM_AGENT_DEFAULTS, seed from the key."""
    text = _utf8(req.input)
    if not text.lstrip().startswith("{"):
        fields: dict[str, Any] = {"messages": [{"role": "user", "content": text}]}
    else:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"input looks like JSON but does not parse: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInputError("JSON input must be an object")
        unknown = sorted(set(raw) - _AGENT_LLM_KEYS)
        if unknown:
            raise InvalidInputError(
                f"unknown JSON keys {unknown} (allowed: {sorted(_AGENT_LLM_KEYS)})"
            )
        fields = raw
    messages: list[tuple[str, str]] = []
    raw_msgs = fields.get("messages", [])
    if not isinstance(raw_msgs, list):
        raise InvalidInputError('\'messages\' must be a list of {"role", "content"}')
    for m in raw_msgs:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
            or set(m) - {"role", "content"}
        ):
            raise InvalidInputError('each message must be {"role": str, "content": str}')
        messages.append((m["role"], m["content"]))
    prompt = fields.get("prompt", "")
    if not isinstance(prompt, str):
        raise InvalidInputError("'prompt' must be a string")
    if not prompt and not messages:
        raise InvalidInputError("give 'messages' or 'prompt'")
    merged = {
        **LLM_AGENT_DEFAULTS,
        **{k: v for k, v in fields.items() if k in LLM_AGENT_DEFAULTS or k == "seed"},
    }
    probe = pb.AgentInferRequest(key=req.key, model=req.model, input=json.dumps(merged).encode())
    _, params = _agent_generation(probe, int(LLM_AGENT_DEFAULTS["max_tokens"]))
    if params.max_tokens > max_tokens:
        raise InvalidInputError(
            f"max_tokens {params.max_tokens} is above the limit of {max_tokens}"
        )
    params.stop.extend(parse_stop(fields.get("stop")))
    return prompt, params, messages


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"input is not valid UTF-8 (byte {exc.start})") from None


def _agent_generation(
    req: pb.AgentInferRequest,
    default_tokens: int,
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
            raise InvalidInputError(
                f"unknown JSON keys {unknown} (allowed: {sorted(_AGENT_JSON_KEYS)})"
            )
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
        temperature=num("temperature", 1.0),
        top_k=num("top_k", 0, 2**32 - 1),
        top_p=num("top_p", 1.0),
        seed=seed,
    )
    return prompt, params
