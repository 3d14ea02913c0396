"""One model call of an analyst, and the running account of an analysis' calls."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field

from toolkit.analysts.records import AnalyseConfig
from toolkit.errors import ContextWindowError, LLMError
from toolkit.known import add_known
from toolkit.llm.gateway import Gateway

M = TypeVar("M", bound=BaseModel)


class AnalystOutput(BaseModel):
    """What an analyst produced for one trajectory, before the stage's checks."""

    reply: Any = Field(None, description="The validated ErrorReply / SuccessReply, or None.")
    report: str = Field("", description="The analysis text.")
    fix_passed: bool | None = None
    failure: str | None = Field(None, description="Why there is no usable reply.")
    turns: int = 0
    tokens_in: int | None = Field(0, description="None once a call's count was not reported.")
    tokens_out: int | None = Field(0, description="None once a call's count was not reported.")
    calls: int = Field(0, description="Model calls made (failed ones included).")
    cached: int = Field(0, description="Of them, replies replayed from the response cache.")


async def ask(
    gateway: Gateway,
    config: AnalyseConfig,
    messages: list[dict[str, Any]],
    response_model: type[M],
    out: AnalystOutput,
    seed: int,
    max_tokens: int | None = None,
) -> M | None:
    """One structured call; tokens and turns go to ``out``. On a failed call (invalid or
    truncated reply after the gateway's repair round, provider error) ``out.failure`` says
    why and the result is None: the stage records the analysis as dropped. ``max_tokens``:
    this call's reply limit when below the config's."""
    out.turns += 1
    out.calls += 1
    try:
        completion = await gateway.acomplete_full(
            messages,
            config.model,
            response_model,
            temperature=config.temperature,
            max_tokens=min(config.max_tokens, max_tokens or config.max_tokens),
            seed=seed,
        )
    except LLMError as exc:
        text = str(exc)
        kind = "invalid-reply" if "no valid" in text else "model-error"
        if isinstance(exc, ContextWindowError):
            # The analysis outgrew the context (the agentic analyst's steps pile up), not a
            # server fault: "model-error" told the user to fix the model settings, and a
            # resume redid it to the same end.
            kind = "context-full"
        out.failure = f"{kind}: {text}"
        # An invalid reply still cost its tokens (unknown ones make the total unknown).
        out.tokens_in = add_known(out.tokens_in, exc.tokens_in)
        out.tokens_out = add_known(out.tokens_out, exc.tokens_out)
        return None
    out.tokens_in = add_known(out.tokens_in, completion.tokens_in)
    out.tokens_out = add_known(out.tokens_out, completion.tokens_out)
    out.cached += completion.cache_hit
    return completion.value
