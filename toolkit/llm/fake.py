"""A scripted fake model, served as the litellm custom provider ``fake/<name>``.

Tests run the real gateway path (litellm, cache, retries, calls log) against it, with no
network. A scenario answers from a script (a list consumed in call order, or a function of
the messages), can sleep to simulate latency, and can inject faults at a seeded rate::

    with fake_model(script=[Answer(value=4)], faults=Faults(rate=0.3, seed=1)) as model:
        complete([{"role": "user", "content": "2+2?"}], model=model, response_model=Answer)

Fault draws are deterministic: each request's draw is a hash of the seed, the messages and
how many times those exact messages were seen before, so the same workload gets the same
faults whatever the thread or task scheduling. The model names ``fake/echo`` (echoes the last
user message) and ``fake/rehearsal`` (carries a whole ``evolve``: :mod:`toolkit.llm.rehearsal`)
always exist.

A scripted agent step (``{"thought", "tool", "args"}``) answers in the protocol the agent
asked in: the JSON object under a response schema, a ``code``-protocol reply (prose and a
python block, a ``FINAL ANSWER:`` line or ``read_skill("id")``, cited sections in brackets)
for a plain-text request, so one script drives an agent under either protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, Union

from pydantic import BaseModel, Field

from toolkit.llm._litellm import get_litellm

PROVIDER = "fake"


class FaultKind(StrEnum):
    """A failure the fake model can inject."""

    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    CONNECTION = "connection"
    AUTH = "auth"
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"


TRANSIENT_FAULTS: tuple[FaultKind, ...] = (
    FaultKind.TIMEOUT,
    FaultKind.RATE_LIMIT,
    FaultKind.SERVER_ERROR,
    FaultKind.CONNECTION,
)
"""Faults the gateway retries."""

_CONTENT_FAULTS = (FaultKind.MALFORMED_JSON, FaultKind.TRUNCATED_JSON)


class Faults(BaseModel):
    """Random faults: each request fails with probability ``rate``, kind drawn from ``kinds``."""

    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability that one request is faulty."""
    kinds: list[FaultKind] = Field(default_factory=lambda: list(TRANSIENT_FAULTS))
    """Kinds to draw from, uniformly."""
    seed: int = 0
    """Seed of the draws."""


ScriptItem = Union[str, dict, list, BaseModel, FaultKind, BaseException]  # noqa: UP007
"""A reply: text, a JSON value or pydantic object (sent as JSON), a fault, or an exception."""
Script = Union[Sequence[ScriptItem], Callable[[list[dict[str, Any]]], ScriptItem], None]  # noqa: UP007


class FakeRequest(BaseModel):
    """One request the fake model received."""

    messages: list[dict[str, Any]]
    """The messages sent."""
    params: dict[str, Any]
    """Optional params litellm passed (temperature, response_format...)."""
    fault: FaultKind | None = None
    """The fault injected into this request, if any."""


class _Scenario:
    """A registered fake model's script, latency, faults and counters (thread-safe)."""

    def __init__(
        self, script: Script, latency: float, faults: Faults | None, usage: bool = True
    ) -> None:
        self.script = script
        self.latency = latency
        self.faults = faults or Faults()
        self.usage = usage
        self.lock = threading.Lock()
        self.position = 0
        self.seen: Counter[str] = Counter()
        self.requests: list[FakeRequest] = []
        self.fault_counts: Counter[FaultKind] = Counter()

    def _draw(self, messages: list[dict[str, Any]]) -> FaultKind | None:
        if self.faults.rate <= 0 or not self.faults.kinds:
            return None
        key = json.dumps(messages, sort_keys=True, default=str)
        with self.lock:
            occurrence = self.seen[key]
            self.seen[key] += 1
        digest = hashlib.sha256(f"{self.faults.seed}\0{occurrence}\0{key}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if u >= self.faults.rate:
            return None
        return self.faults.kinds[int.from_bytes(digest[8:12], "big") % len(self.faults.kinds)]

    def next_item(
        self, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> tuple[ScriptItem, FaultKind | None]:
        """The reply for this request and the random fault to apply to it (if any)."""
        fault = self._draw(messages)
        safe_params = {k: v for k, v in params.items() if k != "api_key"}
        with self.lock:
            self.requests.append(FakeRequest(messages=messages, params=safe_params, fault=fault))
            if fault is not None:
                self.fault_counts[fault] += 1
            if fault is not None and fault not in _CONTENT_FAULTS:
                # A request that errors does not use up the script: the retry gets the item.
                return "", fault
            if not callable(self.script):
                item = self._script_item(messages, consume=fault not in _CONTENT_FAULTS)
        if callable(self.script):
            # Outside the lock: a script function may be slow, and calls overlap as in reality.
            item = self.script(messages)
        if isinstance(item, FaultKind) and item in _CONTENT_FAULTS and fault is None:
            return _SAMPLE_JSON, item
        return item, fault

    def _script_item(self, messages: list[dict[str, Any]], consume: bool) -> ScriptItem:
        if self.script is None or callable(self.script):
            return _last_user_text(messages)
        if self.position >= len(self.script):
            raise get_litellm().BadRequestError(
                message=f"fake model script exhausted after {len(self.script)} replies",
                model="fake",
                llm_provider=PROVIDER,
            )
        item = self.script[self.position]
        if consume:
            self.position += 1
        return item


_SAMPLE_JSON = '{"note": "a reply the fake model was told to break", "items": [1, 2, 3]}'

_registry_lock = threading.Lock()


def _rehearsal(messages: list[dict[str, Any]]) -> Any:
    from toolkit.llm.rehearsal import script  # imports the consolidation: only when called

    return script(messages)


_registry: dict[str, _Scenario] = {
    "echo": _Scenario(None, 0.0, None),
    "rehearsal": _Scenario(_rehearsal, 0.0, None),
}
_names = itertools.count(1)
# Default names differ between processes, so the on-disk cache never hands one process's
# scripted replies to another's unnamed fake.
_RUN_TOKEN = secrets.token_hex(4)


class FakeModel(str):
    """The model string ``fake/<name>`` of a registered scenario, with its counters.

    It is a ``str`` so it goes wherever a model name goes (``complete(..., model=m)``).
    """

    _scenario: _Scenario

    def __new__(cls, name: str, scenario: _Scenario) -> FakeModel:  # noqa: D102
        obj = super().__new__(cls, f"{PROVIDER}/{name}")
        obj._scenario = scenario
        return obj

    @property
    def calls(self) -> int:
        """Requests this model received (faulty ones included)."""
        return len(self._scenario.requests)

    @property
    def requests(self) -> list[FakeRequest]:
        """Every request received, in arrival order."""
        with self._scenario.lock:
            return list(self._scenario.requests)

    @property
    def fault_counts(self) -> dict[FaultKind, int]:
        """Faults injected so far, by kind."""
        with self._scenario.lock:
            return dict(self._scenario.fault_counts)


@contextmanager
def fake_model(
    script: Script = None,
    *,
    latency: float = 0.0,
    faults: Faults | None = None,
    name: str | None = None,
    usage: bool = True,
) -> Iterator[FakeModel]:
    """Register a fake model for the duration of the ``with`` block.

    Args:
        script: replies in call order (a list), or a function of the messages returning a
            reply; None echoes the last user message. A reply is text, a dict/list or pydantic
            object (sent as JSON), a :class:`FaultKind` (injected on cue), or an exception
            (raised).
        latency: seconds each request takes (``asyncio.sleep`` in async calls).
        faults: random faults at a seeded rate.
        name: the name after ``fake/``; by default one no other process uses (replies are
            cached under the model name like any model's, so a default-named fake never
            replays another run's script; a named one does, by design, when its prompts
            repeat: give a new name when you change its script, or turn the cache off).
        usage: report token usage; False answers as a server that sends none (litellm then
            shows a usage of zeros, as it does for such OpenAI-compatible servers).

    Yields:
        The model string (a :class:`FakeModel`, which also counts requests).
    """
    get_litellm()  # registers the provider
    key = name or f"scenario-{_RUN_TOKEN}-{next(_names)}"
    scenario = _Scenario(script, latency, faults, usage)
    with _registry_lock:
        if key in _registry:
            raise ValueError(f"fake model {key!r} is already registered")
        _registry[key] = scenario
    try:
        yield FakeModel(key, scenario)
    finally:
        with _registry_lock:
            _registry.pop(key, None)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _render(item: ScriptItem) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, BaseModel):
        return item.model_dump_json()
    return json.dumps(item)


def _is_action(item: ScriptItem) -> bool:
    return isinstance(item, dict) and isinstance(item.get("tool"), str) and "args" in item


def _code_reply(action: dict[str, Any]) -> str:
    """A scripted agent action as the ``code`` protocol writes it: prose, then a fenced
    python block, a ``FINAL ANSWER:`` line or a ``read_skill("id")`` line."""
    args = action.get("args") or {}
    thought = str(action.get("thought") or "").strip()
    cited = " ".join(f"[{ref}]" for ref in action.get("cited_sections") or [])
    thought = f"{thought} {cited}".strip()
    tool = action["tool"]
    if tool == "python":
        body = f"```python\n{str(args.get('code', '')).rstrip()}\n```"
    elif tool == "submit":
        body = f"FINAL ANSWER: {args.get('answer', '')}"
    elif tool == "read_skill_file":
        body = f'read_skill("{args.get("section") or args.get("path") or ""}")'
    else:
        body = json.dumps(action)
    return f"{thought}\n{body}" if thought else body


def _corrupt(text: str, kind: FaultKind) -> str:
    if kind is FaultKind.TRUNCATED_JSON:
        return text[: max(1, len(text) // 2)]
    # Malformed: single quotes and a trailing comma, as small models like to write.
    return text.replace('"', "'").rstrip("}") + ",}" if "{" in text else "{" + text


def _count_tokens(text: str) -> int:
    # ~4 characters per token, like the tokenizers of common chat models.
    return max(1, (len(text) + 3) // 4)


def _raise_fault(kind: FaultKind, model: str) -> None:
    litellm = get_litellm()
    message = f"fake model injected {kind.value}"
    if kind is FaultKind.TIMEOUT:
        raise litellm.Timeout(message=message, model=model, llm_provider=PROVIDER)
    if kind is FaultKind.RATE_LIMIT:
        raise litellm.RateLimitError(message=message, model=model, llm_provider=PROVIDER)
    if kind is FaultKind.SERVER_ERROR:
        raise litellm.InternalServerError(message=message, model=model, llm_provider=PROVIDER)
    if kind is FaultKind.CONNECTION:
        raise litellm.APIConnectionError(message=message, model=model, llm_provider=PROVIDER)
    if kind is FaultKind.AUTH:
        raise litellm.AuthenticationError(message=message, model=model, llm_provider=PROVIDER)


def _lookup(model: str) -> _Scenario:
    name = model.split("/", 1)[1] if model.startswith(PROVIDER + "/") else model
    with _registry_lock:
        scenario = _registry.get(name)
    if scenario is None:
        raise get_litellm().BadRequestError(
            message=f"no fake model named {name!r} is registered (use fake_model())",
            model=model,
            llm_provider=PROVIDER,
        )
    return scenario


def _respond(scenario: _Scenario, model: str, messages: list[dict[str, Any]], params: dict) -> Any:
    litellm = get_litellm()
    item, fault = scenario.next_item(messages, params)
    if fault is not None and fault not in _CONTENT_FAULTS:
        _raise_fault(fault, model)
    if isinstance(item, BaseException):
        raise item
    if isinstance(item, FaultKind):
        _raise_fault(item, model)
        raise AssertionError("unreachable: content faults are resolved in next_item")
    if isinstance(item, dict) and "tool_calls" in item and params.get("tools"):
        return _tool_reply(litellm, model, messages, item, scenario.usage)
    if _is_action(item) and not params.get("response_format") and not params.get("tools"):
        text = _code_reply(item)  # a scripted agent step, asked for as plain text
    else:
        text = _render(item)
    finish_reason = "stop"
    if fault is not None:
        text = _corrupt(text, fault)
        if fault is FaultKind.TRUNCATED_JSON:
            finish_reason = "length"
    prompt_text = "".join(str(m.get("content", "")) for m in messages)
    usage = litellm.Usage(
        prompt_tokens=_count_tokens(prompt_text) + 4 * len(messages),
        completion_tokens=_count_tokens(text),
        total_tokens=_count_tokens(prompt_text) + 4 * len(messages) + _count_tokens(text),
    )
    return litellm.ModelResponse(
        model=f"{PROVIDER}/{model}",
        choices=[
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": text},
            }
        ],
        usage=usage if scenario.usage else None,
    )


def _tool_reply(
    litellm: Any, model: str, messages: list[dict[str, Any]], item: dict, report_usage: bool
) -> Any:
    """A native tool-call reply: ``{"tool_calls": [{"name", "arguments"}], "content"?}``
    (arguments as a dict or, to script a malformed call, a string)."""
    calls = []
    for index, call in enumerate(item["tool_calls"]):
        arguments = call.get("arguments", {})
        calls.append(
            {
                "id": call.get("id", f"call_{index}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    content = item.get("content") or None
    prompt_text = "".join(str(m.get("content", "")) for m in messages)
    out = _count_tokens(json.dumps(item))
    usage = litellm.Usage(
        prompt_tokens=_count_tokens(prompt_text), completion_tokens=out,
        total_tokens=_count_tokens(prompt_text) + out,
    )  # fmt: skip
    return litellm.ModelResponse(
        model=f"{PROVIDER}/{model}",
        choices=[
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": content, "tool_calls": calls},
            }
        ],
        usage=usage if report_usage else None,
    )


def make_fake_handler(litellm: Any) -> Any:
    """Build the litellm ``CustomLLM`` handler for ``fake/...`` (litellm is imported late)."""

    class FakeLLMHandler(litellm.CustomLLM):
        """litellm custom provider serving registered fake scenarios."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            scenario = _lookup(model)
            params = dict(kwargs.get("optional_params") or {})
            if scenario.latency > 0:
                time.sleep(scenario.latency)
            return _respond(scenario, model, messages, params)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            scenario = _lookup(model)
            params = dict(kwargs.get("optional_params") or {})
            if scenario.latency > 0:
                await asyncio.sleep(scenario.latency)
            return _respond(scenario, model, messages, params)

    return FakeLLMHandler()
