"""The LLM layer: one gateway over litellm, the embedded model provider, a scripted fake.

Nothing outside this package imports litellm; everything calls :func:`complete` or
:func:`acomplete` (or a :class:`Gateway` with its own config).
"""

from __future__ import annotations

from toolkit.llm._litellm import get_litellm
from toolkit.llm.cache import CacheEntry, ResponseCache, cache_key
from toolkit.llm.calls import CallLog, CallsSummary, LLMCallRecord, read_calls, summarize_calls
from toolkit.llm.config import LLMConfig, default_cache_dir, default_model
from toolkit.llm.fake import FakeModel, FaultKind, Faults, fake_model
from toolkit.llm.gateway import (
    Completion,
    Gateway,
    acomplete,
    acomplete_full,
    complete,
    complete_full,
    configure,
    default_gateway,
    is_transient,
)
from toolkit.llm.redact import redact, register_secret
from toolkit.llm.structured import StructuredOutputError, extract_json, parse_structured

__all__ = [
    "CacheEntry",
    "CallLog",
    "CallsSummary",
    "Completion",
    "FakeModel",
    "FaultKind",
    "Faults",
    "Gateway",
    "LLMCallRecord",
    "LLMConfig",
    "ResponseCache",
    "StructuredOutputError",
    "acomplete",
    "acomplete_full",
    "cache_key",
    "complete",
    "complete_full",
    "configure",
    "default_cache_dir",
    "default_gateway",
    "default_model",
    "extract_json",
    "fake_model",
    "get_litellm",
    "is_transient",
    "parse_structured",
    "read_calls",
    "redact",
    "register_secret",
    "summarize_calls",
]
