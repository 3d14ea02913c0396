"""A model response's token usage as the provider reported it, and its cost, or unknown (pure).

litellm gives every response a ``usage``: when the server sent none (an OpenAI-compatible
server that leaves it out, some proxies), it makes one of zeros, so zeros alone cannot tell a
measurement from an absence. A prompt of zero tokens is no measurement, though: every chat
request holds at least its template's tokens. So a usage whose prompt count is missing or 0
is unreported, and its completion count with it when that is 0 too (litellm's placeholder);
a completion count of 0 beside a real prompt count is a measured empty reply.

A reply's cost is litellm's price of its usage (:func:`reply_cost`): unknown when the model
is not in litellm's price list (the lookup raises) or the usage was not reported (litellm
would price its zeros at $0); the ``local/`` and ``fake/`` providers are free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolkit.tokens import estimate_tokens

#: Providers that cost nothing: the embedded llama.cpp models and the scripted test models.
FREE_PROVIDERS = ("local/", "fake/")


def _count(value: Any) -> int | None:
    """A non-negative whole count, or None for anything else (absent, None, junk)."""
    if isinstance(value, bool):
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


def reported_usage(response: Any) -> tuple[int | None, int | None]:
    """``(prompt tokens, completion tokens)`` of ``response``; None where not reported."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None, None
    prompt = _count(getattr(usage, "prompt_tokens", None))
    completion = _count(getattr(usage, "completion_tokens", None))
    if not prompt:
        prompt = None
        if not completion:
            completion = None
    return prompt, completion


def estimated_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough prompt size of ``messages`` (their text, characters / 4), for limits that must
    go on counting when the provider reports no usage; never stored as a count."""
    return estimate_tokens("".join(str(m.get("content") or "") for m in messages))


def reply_cost(model: str, response: Any, price: Callable[[Any], float]) -> float | None:
    """The USD cost of ``response`` from model ``model``: 0 for a free provider, else
    ``price(response)`` (litellm's ``completion_cost``); None when that lookup fails (a
    model litellm has no price for) or the provider reported no usage to price."""
    if model.startswith(FREE_PROVIDERS):
        return 0.0
    if None in reported_usage(response):
        return None  # litellm would price its stand-in zeros: $0 that was never measured
    try:
        cost = float(price(response))
    except Exception:  # litellm raises a variety of errors for a model it cannot price
        return None
    return cost if cost >= 0 else None
