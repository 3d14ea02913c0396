"""The ``local/...`` litellm provider: llama-cpp-python running the embedded model in-process.

``local/qwen2.5-coder-1.5b`` (default tier), ``local/qwen2.5-coder-0.5b`` (small tier) or
``local/<path>.gguf`` select the weights (see :mod:`toolkit.llm.model_store`). Each model file
is loaded once per process and kept; one llama.cpp context serves one request at a time, so a
lock per context serialises calls and async calls run the sync path in a worker thread.

Structured output goes through llama.cpp's grammar: a JSON schema in ``response_format``
(``{"type": "json_object", "schema": ...}``, OpenAI's ``json_schema`` shape, or a pydantic
model class) constrains sampling so the reply is valid JSON of that shape. Bound every list
and string in such a schema (``maxItems``/``maxLength``), or generation can run past
``max_tokens`` and be cut off mid-object.

Sampling is reproducible: a prompt is always evaluated the same way whatever the KV cache
held before (see :func:`_prefill`), so the same messages, parameters and ``seed`` give the
same reply on the same machine. Without a seed, llama-cpp-python derives each call's seed
from the previous one, starting at a fixed value per process. Streaming is not supported.

llama-cpp-python is the optional ``local`` extra; it is imported on first use, so importing
this module (as the gateway does to register the provider) never needs it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This module is imported by toolkit.llm._litellm after litellm; importing it directly must
# not make litellm fetch its cost map from the network either.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm import BadRequestError, ContextWindowExceededError, CustomLLM  # noqa: E402
from litellm.types.utils import Choices, Message, ModelResponse, Usage  # noqa: E402

from toolkit.errors import ModelInstallError  # noqa: E402
from toolkit.llm import model_store  # noqa: E402
from toolkit.llm.kv_states import StateCache, common_prefix  # noqa: E402
from toolkit.llm.tool_calls import ToolCall, from_response_message, split_hermes  # noqa: E402

N_CTX_ENV = "TRACE2SKILL_LOCAL_N_CTX"
"""Context length in tokens (default 8192; Qwen2.5 was trained to 32768)."""

N_THREADS_ENV = "TRACE2SKILL_LOCAL_THREADS"
"""CPU threads for llama.cpp (default: every core this process may use)."""

STATE_CACHE_ENV = "TRACE2SKILL_LOCAL_STATE_CACHE_MB"
"""RAM for stashed KV states of conversations taking turns on a context (default 2048; 0: off)."""

DEFAULT_N_CTX = 8192
DEFAULT_MAX_TOKENS = 1024
# Prompts are evaluated in chunks of this many tokens starting at multiples of it (see
# _prefill); small, so at most 63 tokens are recomputed per call.
PREFILL_CHUNK = 64
# Stash a context before a call overwrites it only when that would lose at least this many
# evaluated prompt tokens (re-evaluating fewer costs less than saving and restoring them).
STASH_MIN_TOKENS = 4 * PREFILL_CHUNK
_COST_HEADER = "llm_provider-x-litellm-response-cost"


@dataclass
class _LoadedModel:
    """One llama.cpp model + context, shared by every call in the process."""

    llama: Any  # llama_cpp.Llama, typed loosely because the import is lazy
    formatter: Any  # llama_cpp.llama_chat_format.Jinja2ChatFormatter
    lock: threading.Lock
    n_ctx: int
    canonical: int = 0
    """How many leading tokens in the KV cache were evaluated in aligned prompt chunks."""
    states: StateCache | None = None
    """Stashed states of other conversations (None: disabled)."""


_loaded: dict[tuple[Path, int, int], _LoadedModel] = {}
_load_lock = threading.Lock()
_grammars: dict[str, Any] = {}
# llama-cpp-python silences native output by dup2-ing the process's fds 1/2 (and swapping
# sys.stdout/sys.stderr) and restoring what it saved. That is process-wide state: two threads
# interleaving save/restore leave the later one restoring /dev/null, and every later line of
# the program (progress, results) is lost. One lock held around every such redirection
# (model loads, grammar checks) keeps the saves and restores nested.
_stdio_lock = threading.RLock()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ModelInstallError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ModelInstallError(f"{name} must be at least {minimum}, got {value}")
    return value


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
        import llama_cpp.llama_chat_format
        import llama_cpp.llama_grammar
    except ImportError as exc:
        raise ModelInstallError(
            "the embedded model needs llama-cpp-python: pip install 'trace2skill[local]' "
            f"(or `make venv`); import failed: {exc}"
        ) from exc
    return llama_cpp


@contextlib.contextmanager
def _quiet_stdio() -> Any:
    """Silence fds 1/2 (llama.cpp's native prints) for the block, one thread at a time."""
    from llama_cpp._utils import suppress_stdout_stderr

    with _stdio_lock, suppress_stdout_stderr(disable=False):
        yield


def load_model(path: Path, *, n_ctx: int | None = None, n_threads: int | None = None) -> Any:
    """Return the process-wide ``llama_cpp.Llama`` for ``path`` (loaded on first use)."""
    return _load(path, n_ctx, n_threads).llama


def _load(path: Path, n_ctx: int | None, n_threads: int | None) -> _LoadedModel:
    ctx = n_ctx or _env_int(N_CTX_ENV, DEFAULT_N_CTX)
    threads = n_threads or _env_int(N_THREADS_ENV, _cpu_count())
    key = (path.resolve(), ctx, threads)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        llama_cpp = _import_llama_cpp()
        try:
            # Llama() redirects fds 1/2 itself while it loads (verbose=False): hold the lock.
            with _stdio_lock:
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=PREFILL_CHUNK,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelInstallError(f"llama.cpp could not load {path}: {exc}") from exc
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelInstallError(f"{path} has no chat template in its GGUF metadata")
        eos = llama.token_eos()
        bos = llama.token_bos()
        formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        budget_mb = _env_int(STATE_CACHE_ENV, 2048, minimum=0)
        loaded = _LoadedModel(
            llama=llama,
            formatter=formatter,
            lock=threading.Lock(),
            n_ctx=ctx,
            states=StateCache(budget_bytes=budget_mb * 1024**2) if budget_mb else None,
        )
        if not _loaded:
            atexit.register(_close_all)
        _loaded[key] = loaded
        return loaded


def _close_all() -> None:
    """Free llama.cpp models before interpreter teardown (their __del__ fails that late)."""
    with _load_lock:
        for loaded in _loaded.values():
            with contextlib.suppress(Exception):
                loaded.llama.close()
        _loaded.clear()


def schema_from_response_format(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema requested by an OpenAI/litellm ``response_format``, or None.

    Accepts ``{"type": "json_object", "schema": S}``, ``{"type": "json_schema",
    "json_schema": {"schema": S}}`` and a pydantic model class. ``{"type": "json_object"}``
    without a schema yields ``{}``: any JSON object. ``{"type": "text"}`` yields None.
    """
    if response_format is None:
        return None
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        return dict(response_format.model_json_schema())
    if not isinstance(response_format, dict):
        raise ValueError(f"unsupported response_format {response_format!r}")
    kind = response_format.get("type")
    if kind == "json_object":
        schema = response_format.get("schema") or {}
        return {"type": "object", **schema} if not schema else dict(schema)
    if kind == "json_schema":
        inner = response_format.get("json_schema") or {}
        return dict(inner.get("schema") or {"type": "object"})
    if kind in (None, "text"):
        return None
    raise ValueError(f"unsupported response_format type {kind!r}")


def _grammar(schema: dict[str, Any], llama: Any = None) -> Any:
    """Compile (and memoise) the llama.cpp grammar of a JSON schema.

    With ``llama`` given, the grammar is also parsed by llama.cpp itself once: it rejects
    grammars it finds too big (any string ``maxLength`` over 1000) and
    llama-cpp-python would then crash the process with a NULL sampler, so a rejection
    becomes a ValueError here instead.
    """
    # Property order matters: the grammar emits keys in schema order (reasoning before
    # edits), so the schema is serialised as given, not with sorted keys.
    text = json.dumps(schema)
    cached = _grammars.get(text)
    if cached is not None:
        return cached
    llama_cpp = _import_llama_cpp()
    try:
        grammar = llama_cpp.llama_grammar.LlamaGrammar.from_json_schema(text, verbose=False)
    except Exception as exc:  # the converter raises bare Exceptions for unsupported schemas
        raise ValueError(f"JSON schema cannot be turned into a llama.cpp grammar: {exc}") from exc
    if llama is not None:
        _check_grammar(llama_cpp, llama, grammar)
        _grammars[text] = grammar
    return grammar


def _check_grammar(llama_cpp: Any, llama: Any, grammar: Any) -> None:
    # llama.cpp prints the whole grammar to stderr when it rejects one.
    with _quiet_stdio():
        sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
    if not sampler:
        raise ValueError(
            "llama.cpp rejected the grammar of this JSON schema as too large: lower the "
            "maxLength/maxItems bounds (a string maxLength of at most 1000 works)"
        )
    llama_cpp.llama_sampler_free(sampler)


def _text_content(content: Any) -> str:
    """Message content as one string (OpenAI allows a list of typed parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def _as_list(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _plain_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Messages as the chat template reads them: text content; an assistant's tool calls
    with their arguments as objects (Hermes templates write them with ``tojson``)."""
    plain = []
    for message in messages:
        item = dict(message) if not isinstance(message, dict) else message
        out: dict[str, Any] = {
            "role": item.get("role", "user"),
            "content": _text_content(item.get("content")),
        }
        calls = from_response_message(item)
        if calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]  # fmt: skip
        if item.get("tool_call_id"):
            out["tool_call_id"] = item["tool_call_id"]
        plain.append(out)
    return plain


_CUSTOM_LLM_SIGNATURE = inspect.signature(CustomLLM.completion)


def _request_args(
    provider: CustomLLM, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, list[Any], ModelResponse, dict[str, Any]]:
    """(model, messages, model_response, optional_params) from a call in CustomLLM's
    ``completion`` signature; a call that does not fit it raises TypeError."""
    bound = _CUSTOM_LLM_SIGNATURE.bind(provider, *args, **kwargs).arguments
    return bound["model"], bound["messages"], bound["model_response"], bound["optional_params"]


class LocalLLM(CustomLLM):
    """litellm custom provider serving GGUF models in-process with llama-cpp-python.

    Registered by :func:`toolkit.llm._litellm.get_litellm` as provider ``local``. Zero cost;
    usage counts real tokens. ``n_ctx``/``n_threads`` override the env defaults.
    """

    def __init__(self, *, n_ctx: int | None = None, n_threads: int | None = None) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        _register_zero_cost()

    # litellm calls a custom provider with keyword arguments in CustomLLM's signature; both
    # methods accept that signature (bound against it) and use four of its arguments.
    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """Answer one chat request (litellm's ``CustomLLM.completion`` arguments)."""
        return self._complete(*_request_args(self, args, kwargs))

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """Async :meth:`completion`."""
        # llama.cpp blocks; a worker thread keeps the event loop responsive.
        return await asyncio.to_thread(self._complete, *_request_args(self, args, kwargs))

    def _complete(
        self,
        model: str,
        messages: list[Any],
        model_response: ModelResponse,
        optional_params: dict[str, Any],
    ) -> ModelResponse:
        full_model = f"{model_store.PROVIDER}/{model}"
        try:
            path = model_store.resolve(model)
            loaded = _load(path, self.n_ctx, self.n_threads)
            schema = schema_from_response_format(optional_params.get("response_format"))
            grammar = _grammar(schema, loaded.llama) if schema is not None else None
            # The chat template raises ValueError for conversations it cannot render.
            tools = optional_params.get("tools") or None
            formatted = loaded.formatter(messages=_plain_messages(messages), tools=tools)
            prompt = loaded.llama.tokenize(
                formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
            )
        except (ModelInstallError, ValueError) as exc:
            # BadRequestError: litellm passes it through as non-retryable (other exception
            # types become APIConnectionError, which callers would retry).
            raise BadRequestError(str(exc), model=full_model, llm_provider="local") from exc
        max_tokens = (
            optional_params.get("max_tokens")
            or optional_params.get("max_completion_tokens")
            or min(DEFAULT_MAX_TOKENS, max(loaded.n_ctx - len(prompt), 1))
        )
        if len(prompt) + max_tokens > loaded.n_ctx:
            raise ContextWindowExceededError(
                message=(
                    f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the "
                    f"context window of {loaded.n_ctx} tokens (set {N_CTX_ENV} to enlarge it)"
                ),
                model=full_model,
                llm_provider="local",
            )
        stop = _as_list(optional_params.get("stop")) + _as_list(formatted.stop)
        sampling: dict[str, Any] = {
            key: optional_params[key]
            for key in ("temperature", "top_p", "seed")
            if optional_params.get(key) is not None
        }
        with loaded.lock:
            _switch_conversation(loaded, prompt)
            _prefill(loaded, prompt)
            result = loaded.llama.create_completion(
                prompt=prompt,
                max_tokens=max_tokens,
                stop=stop,
                stopping_criteria=formatted.stopping_criteria,
                grammar=grammar,
                **sampling,
            )
        choice = result["choices"][0]
        usage = result["usage"]
        text, calls = (choice["text"], [])
        if tools:
            text, calls = split_hermes(text)
        return _fill_response(
            model_response,
            model=full_model,
            text=text,
            tool_calls=calls,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )


def _switch_conversation(loaded: _LoadedModel, prompt: list[int]) -> None:
    """Stash the context's conversation if this prompt would overwrite it, and restore this
    prompt's own conversation if one is stashed (see :mod:`toolkit.llm.kv_states`).

    The restored KV holds exactly the aligned prompt evaluation :func:`_prefill` would make,
    so replies do not depend on whether a state was restored.
    """
    states = loaded.states
    if states is None:
        return
    llama = loaded.llama
    held = min(llama.n_tokens, loaded.canonical)
    current = common_prefix(llama._input_ids[:held], prompt)
    entry, best = states.best(prompt)
    if held - current >= STASH_MIN_TOKENS:
        state = llama.save_state()
        size = len(state.llama_state) + state.scores.nbytes + state.input_ids.nbytes
        states.stash(llama._input_ids[:held], state, size)
    if entry is not None and best // PREFILL_CHUNK > current // PREFILL_CHUNK:
        seed = llama._seed  # load_state rewinds it: seedless calls keep their sequence
        llama.load_state(states.take(entry))
        llama._seed = seed
        loaded.canonical = len(entry.tokens)


def _prefill(loaded: _LoadedModel, prompt: list[int]) -> None:
    """Evaluate ``prompt`` into the KV cache so the result does not depend on earlier calls.

    llama.cpp's logits differ in the last bits with how a prompt was split into batches, and
    llama-cpp-python reuses any cached prefix, so the same prompt and seed could sample
    differently depending on what ran before. Here every prompt is evaluated in chunks of
    PREFILL_CHUNK tokens aligned at multiples of PREFILL_CHUNK, and a cached prefix is reused
    only up to the last full aligned chunk of an earlier *prompt* (generated tokens were
    evaluated one at a time, so they are recomputed). The KV cache then holds exactly what a
    fresh evaluation would, and create_completion samples from it without re-evaluating.
    Uses llama-cpp-python internals (pinned 0.3.36): ``_input_ids`` and ``n_tokens``.
    """
    import numpy as np

    llama = loaded.llama
    limit = min(llama.n_tokens, loaded.canonical, len(prompt))
    cached = np.asarray(llama._input_ids[:limit])
    mismatch = np.flatnonzero(cached != np.asarray(prompt[:limit], dtype=cached.dtype))
    common = int(mismatch[0]) if mismatch.size else limit
    # Keep at least one prompt token to evaluate: sampling needs fresh logits.
    start = min(common, len(prompt) - 1) // PREFILL_CHUNK * PREFILL_CHUNK
    loaded.canonical = 0  # until the evaluation below completes
    # eval() drops KV entries from n_tokens on before decoding.
    llama.n_tokens = start
    llama.eval(prompt[start:])
    loaded.canonical = len(prompt) // PREFILL_CHUNK * PREFILL_CHUNK


def _fill_response(
    response: ModelResponse,
    *,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    tool_calls: list[ToolCall] | None = None,
) -> ModelResponse:
    response.id = f"chatcmpl-local-{uuid.uuid4().hex}"
    response.created = int(time.time())
    response.model = model
    response.choices = [
        Choices(
            index=0,
            finish_reason=finish_reason,
            message=Message(
                role="assistant",
                content=text,
                tool_calls=[c.openai() for c in tool_calls] if tool_calls else None,
            ),
        )
    ]
    response.usage = Usage(  # type: ignore[attr-defined]
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
    # litellm prices a response from this header before looking the model up in its cost
    # map, so local models (any .gguf path included) cost 0 without a lookup warning.
    hidden = getattr(response, "_hidden_params", None) or {}
    headers = dict(hidden.get("additional_headers") or {})
    headers[_COST_HEADER] = 0.0
    hidden["additional_headers"] = headers
    response._hidden_params = hidden
    return response


def _register_zero_cost() -> None:
    """Give the tiers a zero-cost entry in litellm's cost map (for ``completion_cost``)."""
    import litellm

    entries = {
        tier.model: {
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
            "cache_creation_input_token_cost": 0.0,
            "cache_read_input_token_cost": 0.0,
            "litellm_provider": model_store.PROVIDER,
            "mode": "chat",
            "max_input_tokens": 32768,
            "max_output_tokens": 32768,
            "max_tokens": 32768,
            "supports_response_schema": True,
        }
        for tier in model_store.TIERS.values()
    }
    missing = {k: v for k, v in entries.items() if k not in litellm.model_cost}
    if missing:
        litellm.register_model(missing)
