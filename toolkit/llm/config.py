"""Gateway configuration: one pydantic model built from env vars and CLI options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from toolkit.errors import LLMError

FALLBACK_DEFAULT_MODEL = "local/qwen2.5-coder-1.5b"

ENV_PREFIX = "TRACE2SKILL_"


def default_model() -> str:
    """The model used when none is given: ``$TRACE2SKILL_MODEL``, else the embedded default."""
    env = os.environ.get("TRACE2SKILL_MODEL")
    if env:
        return env
    try:
        from toolkit.llm.model_store import DEFAULT_MODEL
    except ImportError:  # the model store is optional (embedded-model extra)
        return FALLBACK_DEFAULT_MODEL
    return str(DEFAULT_MODEL)


def default_cache_dir() -> Path:
    """``$TRACE2SKILL_CACHE_DIR``, else the user cache dir ``.../trace2skill/llm``."""
    env = os.environ.get("TRACE2SKILL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("trace2skill")) / "llm"


class LLMConfig(BaseModel):
    """Everything the gateway needs to make calls. Build with :meth:`from_env`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default_factory=default_model)
    """litellm model string, e.g. ``local/qwen2.5-coder-1.5b``, ``openai/gpt-4o-mini``."""
    api_base: str | None = None
    """Base URL of an OpenAI-compatible server (vLLM, Ollama...); None for the default."""
    api_key: SecretStr | None = None
    """Key for the provider; only ever read from the environment (``TRACE2SKILL_API_KEY``)."""
    temperature: float | None = None
    """Sampling temperature; None leaves the provider's default."""
    max_tokens: int | None = None
    """Cap on generated tokens; None leaves the provider's default."""
    timeout: float = 600.0
    """Seconds one request may take before it counts as a (transient) timeout."""
    max_retries: int = Field(default=4, ge=0)
    """Retries of transient errors (rate limits, timeouts, 5xx, connection) per logical call."""
    retry_base_delay: float = Field(default=1.0, ge=0)
    """First backoff delay in seconds; doubles per retry, with jitter."""
    retry_max_delay: float = Field(default=30.0, ge=0)
    """Upper bound of one backoff delay in seconds."""
    concurrency: int = Field(default=8, ge=1)
    """Maximum number of model requests in flight at once (per event loop, and for threads)."""
    cache: bool = True
    """Whether to read and write the on-disk response cache."""
    cache_dir: Path = Field(default_factory=default_cache_dir)
    """Directory of the content-addressed response cache."""
    calls_log: Path | None = None
    """Where to append one JSON record per logical call (``llm_calls.jsonl``); None: nowhere."""

    @field_validator("api_base")
    @classmethod
    def _one_spelling(cls, value: str | None) -> str | None:
        # `.../v1/` and `.../v1` are one server: one spelling keeps the cache keys equal.
        return value.strip().rstrip("/") or None if value is not None else None

    @field_validator("model")
    @classmethod
    def _model_has_provider(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be empty")
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """Build a config from ``TRACE2SKILL_*`` env vars; non-None ``overrides`` win."""
        env = os.environ
        values: dict[str, Any] = {}
        simple = {
            "model": "MODEL",
            "api_base": "API_BASE",
            "temperature": "TEMPERATURE",
            "max_tokens": "MAX_TOKENS",
            "timeout": "TIMEOUT",
            "max_retries": "MAX_RETRIES",
            "concurrency": "CONCURRENCY",
            "cache_dir": "CACHE_DIR",
            "calls_log": "CALLS_LOG",
        }
        for field, suffix in simple.items():
            raw = env.get(ENV_PREFIX + suffix)
            if raw:
                values[field] = raw
        if env.get(ENV_PREFIX + "API_KEY"):
            values["api_key"] = env[ENV_PREFIX + "API_KEY"]
        if env.get(ENV_PREFIX + "NO_CACHE", "").lower() in ("1", "true", "yes"):
            values["cache"] = False
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            from toolkit.errors import validation_details

            # Name the setting as the user wrote it: an env var or an option.
            fields = {e["loc"][0] for e in exc.errors() if e.get("loc")}
            where = ", ".join(
                f"{ENV_PREFIX}{simple[f]}" if f in simple and f not in overrides else str(f)
                for f in sorted(map(str, fields))
            )
            raise LLMError(
                f"invalid LLM setting {where}: {'; '.join(validation_details(exc))}"
            ) from None


#: ``evolve --author-api-base default``: the author model's provider's own endpoint.
PROVIDER_ENDPOINT = "default"


def stored_api_base(url: str | None) -> str | None:
    """``url`` as run files may record it: a password in it is replaced by ``***`` (run
    folders are shared; the key belongs in the environment)."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and that part as a Basic
    ``Authorization`` header value (None when the URL holds no credentials)."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    header = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), header


def reusable_api_base(recorded: str | None) -> str | None:
    """A recorded ``api_base`` to call again, or None when none was recorded.

    Raises:
        LLMError: the recorded URL had a password, which was not stored.
    """
    if recorded and ":***@" in recorded:
        raise LLMError(
            f"the run used the server {recorded}, whose password was not stored: give "
            "--api-base (or TRACE2SKILL_API_BASE) with it again"
        )
    return recorded or None
