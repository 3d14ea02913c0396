"""CLI commands: ``trace2skill llm ask|calls`` and the shared ``llm_options`` decorator."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from toolkit.errors import LLMError


def llm_options(
    func: Callable[..., Any] | None = None,
    *,
    model_default: str = "$TRACE2SKILL_MODEL or the embedded model",
) -> Any:
    """Add ``--model --api-base --no-cache --cache-dir --concurrency`` to a click command
    (``@llm_options``, or ``@llm_options(model_default=...)`` where ``--model`` defaults to
    something else, as a run's own model).

    The command receives one ``llm_config`` argument (an :class:`toolkit.llm.LLMConfig`),
    built from the ``TRACE2SKILL_*`` env vars with the given options on top.
    """
    if func is None:
        return functools.partial(llm_options, model_default=model_default)

    @click.option(
        "--model",
        metavar="MODEL",
        help=f"litellm model string (default: {model_default}), "
        "e.g. local/qwen2.5-coder-1.5b, openai/gpt-4o-mini, fake/echo.",
    )
    @click.option(
        "--api-base",
        metavar="URL",
        help="Base URL of an OpenAI-compatible server (vLLM, Ollama...). "
        "The key is read from $TRACE2SKILL_API_KEY or the provider's env var.",
    )
    @click.option("--no-cache", is_flag=True, help="Neither read nor write the response cache.")
    @click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Response cache directory (default: $TRACE2SKILL_CACHE_DIR or the user cache).",
    )
    @click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        help="Most model requests in flight at once (default 8).",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        model: str | None,
        api_base: str | None,
        no_cache: bool,
        cache_dir: Path | None,
        concurrency: int | None,
        **kwargs: Any,
    ) -> Any:
        from toolkit.llm.config import LLMConfig

        kwargs["llm_config"] = LLMConfig.from_env(
            model=model,
            api_base=api_base,
            cache=False if no_cache else None,
            cache_dir=cache_dir,
            concurrency=concurrency,
        )
        return func(*args, **kwargs)

    return wrapper


_SCHEMAS = ("patch",)


def _response_model(name: str | None) -> type[BaseModel] | None:
    if name is None:
        return None
    if name == "patch":
        try:
            from toolkit.patch import Patch
        except ImportError as exc:
            raise LLMError(f"the patch schema is unavailable: {exc}") from None
        return Patch
    raise LLMError(f"unknown schema {name!r}; choose from: {', '.join(_SCHEMAS)}")


@click.group()
def llm() -> None:
    """Call models through the gateway and inspect call logs.

    \b
    Examples:
      trace2skill llm ask "Name one prime number."
      trace2skill llm ask "hello" --model fake/echo
      trace2skill llm calls runs/2026-01-01-demo
    """


@llm.command()
@click.argument("prompt")
@click.option("--system", "system", metavar="TEXT", help="System message sent before PROMPT.")
@click.option(
    "--json-schema",
    "schema",
    type=click.Choice(_SCHEMAS),
    help="Ask for a validated JSON object of this schema (patch: a skill Patch).",
)
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap on generated tokens.")
@click.option("--temperature", type=click.FloatRange(min=0), help="Sampling temperature.")
@llm_options
def ask(
    prompt: str,
    system: str | None,
    schema: str | None,
    max_tokens: int | None,
    temperature: float | None,
    llm_config: Any,
) -> None:
    """Send PROMPT to a model (one gateway call) and print the reply.

    With --json-schema the reply is validated (with one repair round) and printed as JSON.
    Replies are cached on disk; --no-cache forces a fresh call.

    \b
    Examples:
      trace2skill llm ask "What is 17 * 23? Answer with the number."
      trace2skill llm ask "Fix the typo in section Usage" --json-schema patch
      trace2skill llm ask "hi" --model openai/gpt-4o-mini --no-cache
      trace2skill llm ask "hi" --model fake/echo --system "Be brief."
    """
    from toolkit.errors import LLMError
    from toolkit.llm.gateway import Gateway

    if not prompt.strip():
        raise LLMError("the prompt is empty: give the question to ask")
    response_model = _response_model(schema)
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    gateway = Gateway(llm_config)
    try:
        result = gateway.complete_full(messages, response_model=response_model, **params)
    finally:
        gateway.close()
    if response_model is not None:
        click.echo(result.value.model_dump_json(indent=2, exclude_none=True))
    else:
        click.echo(result.text)
    if result.cut:
        # The text printed is incomplete: without a word it reads as the model's whole answer.
        limit = params.get("max_tokens", llm_config.max_tokens)
        cap = f"max_tokens {limit}" if limit is not None else "the server's max_tokens"
        click.echo(
            f"Note: the reply was cut at the token limit ({cap}); "
            "raise it with --max-tokens N for the whole reply.",
            err=True,
        )


@llm.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def calls(path: Path, as_json: bool) -> None:
    """Summarise a calls log: PATH is a run directory or an llm_calls.jsonl file.

    \b
    Examples:
      trace2skill llm calls runs/2026-01-01-demo
      trace2skill llm calls runs/2026-01-01-demo/llm_calls.jsonl --json
    """
    from toolkit.cost import CostTally
    from toolkit.llm.calls import read_calls, summarize_calls
    from toolkit.tokens import describe_tokens

    summary = summarize_calls(read_calls(path))
    if as_json:
        click.echo(summary.model_dump_json())
        return
    silent = summary.tokens_unreported
    # Sums over the calls that reported usage, saying how many did not (never a silent 0).
    none_reported = silent >= summary.calls > 0
    tokens_in, tokens_out = (
        (None, None) if none_reported else (summary.tokens_in, summary.tokens_out)
    )
    rows = [
        ("calls", f"{summary.calls}"),
        ("cache hits", f"{summary.cache_hits}"),
        ("model requests", f"{summary.model_requests}"),
        ("retries", f"{summary.retries}"),
        ("repair rounds", f"{summary.repair_rounds}"),
        ("tokens in", describe_tokens(tokens_in, silent, summary.calls, "calls")),
        ("tokens out", describe_tokens(tokens_out, silent, summary.calls, "calls")),
        (
            "cost",
            CostTally.from_sum(summary.cost_usd, summary.calls, summary.cost_unpriced).describe(
                "calls"
            ),
        ),
        ("errors", json.dumps(summary.errors) if summary.errors else "0"),
    ]
    for model, count in sorted(summary.models.items()):
        rows.append((f"model {model}", f"{count}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


COMMANDS: list[click.Command] = [llm]
