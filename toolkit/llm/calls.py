"""The calls log: one JSON record per logical LLM call (``llm_calls.jsonl`` of a run).

A logical call is one :func:`toolkit.llm.complete` invocation: its retries and its repair
round are folded into one record, so the number of lines equals the number of calls. Lines
are written with a single ``os.write`` on an ``O_APPEND`` descriptor under a lock, so
concurrent calls (threads, tasks, even processes) never interleave or duplicate lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from toolkit.cost import CostTally
from toolkit.errors import LLMError
from toolkit.known import predates_unknown, zero_absent
from toolkit.tokens import TokenTally

CALL_RECORD_SCHEMA_VERSION = 2
"""2: ``tokens_in``/``tokens_out`` are null when the provider reported no usage (1 held 0),
``cost_usd`` is null when the call could not be priced (1 held 0), and ``tokens_estimate`` is
new. A version 1 record reads as before: an absent count or cost is 0."""
UNKNOWN_USAGE_SINCE = 2
"""The first calls-log format whose token counts and cost may be unknown (null)."""
_USAGE_FIELDS = ("tokens_in", "tokens_out", "cost_usd")


class LLMCallRecord(BaseModel):
    """What one logical LLM call did. Contains no prompt text and no secrets."""

    schema_version: int = CALL_RECORD_SCHEMA_VERSION
    """Format version of this record."""
    call_id: str
    """Unique id of the call (hex)."""
    model: str
    """litellm model string."""
    tokens_in: int | None = None
    """Prompt tokens over all attempts and the repair round (0 on a cache hit); None when a
    reply came without its count (the provider reported no usage: :mod:`toolkit.tokens`)."""
    tokens_out: int | None = None
    """Completion tokens over all attempts and the repair round (0 on a cache hit); None when
    a reply came without its count."""
    tokens_estimate: int | None = None
    """Only when a count is unknown: prompt + completion tokens with the unreported counts
    estimated from the text (characters / 4), what ``evolve --budget tokens`` counts for the
    call. None when both counts are known."""
    cost_usd: float | None = None
    """Cost in USD as litellm computes it (0 for local/fake models and cache hits); None
    when a reply could not be priced: a model not in litellm's price list, or no usage
    reported (:mod:`toolkit.cost`)."""
    latency_s: float
    """Wall time of the logical call in seconds, backoff sleeps included."""
    started_at: float
    """Start time, Unix epoch seconds."""
    ended_at: float
    """End time, Unix epoch seconds."""
    cache_hit: bool = False
    """True if the answer came from the disk cache (no model request was made)."""
    cache_key: str | None = None
    """The cache key of the call (None when caching was off)."""
    retries: int = 0
    """Transient failures that were retried."""
    repair_rounds: int = 0
    """Structured-output repair rounds (0 or 1)."""
    model_requests: int = 0
    """Requests actually sent to the model (attempts, retries and repair included)."""
    structured: bool = False
    """Whether a response model (JSON schema) was requested."""
    finish_reason: str | None = None
    """Why the final reply ended, as the provider said (``stop``, ``tool_calls``; ``length``:
    cut at max_tokens, its text incomplete). From the cache on a hit; None if the call failed
    or it is unknown."""
    error: str | None = None
    """Exception class name if the call failed, else None."""
    error_message: str | None = None
    """Redacted, one-line error message if the call failed."""

    @model_validator(mode="before")
    @classmethod
    def _version_1_counts(cls, data: Any) -> Any:
        # Version 1 had no unknown count or cost: one it left out was 0 (its default).
        if predates_unknown(data, UNKNOWN_USAGE_SINCE):
            return zero_absent(data, _USAGE_FIELDS)
        return data

    @property
    def budget_tokens(self) -> int:
        """Prompt + completion tokens as a budget counts them: the reported counts, else the
        estimate (0 for a record without one)."""
        if self.tokens_in is not None and self.tokens_out is not None:
            return self.tokens_in + self.tokens_out
        return self.tokens_estimate or 0


def line_counts(line: dict[str, Any]) -> tuple[int | None, int | None]:
    """``(tokens_in, tokens_out)`` of a calls-log line read as a plain dict (by readers that
    skip the model for speed), as :class:`LLMCallRecord` reads them: null or absent is
    unknown, but absent in a version 1 line is 0."""
    if predates_unknown(line, UNKNOWN_USAGE_SINCE):
        line = zero_absent(line, _USAGE_FIELDS)
    counts = line.get("tokens_in"), line.get("tokens_out")
    return (
        None if counts[0] is None else int(counts[0]),
        None if counts[1] is None else int(counts[1]),
    )


def line_cost(line: dict[str, Any]) -> float | None:
    """``cost_usd`` of a calls-log line read as a plain dict, as :class:`LLMCallRecord` reads
    it: null or absent is unknown, but absent in a version 1 line is 0."""
    if predates_unknown(line, UNKNOWN_USAGE_SINCE):
        line = zero_absent(line, _USAGE_FIELDS)
    cost = line.get("cost_usd")
    return None if cost is None else float(cost)


def line_budget_tokens(line: dict[str, Any]) -> int:
    """Tokens a budget counts for a calls-log line read as a dict (see
    :attr:`LLMCallRecord.budget_tokens`)."""
    count_in, count_out = line_counts(line)
    if count_in is not None and count_out is not None:
        return count_in + count_out
    return int(line.get("tokens_estimate") or 0)


class CallLog:
    """Appends :class:`LLMCallRecord` lines to a JSONL file; safe across threads and tasks."""

    def __init__(self, path: Path | str) -> None:
        """Append to ``path`` (its parent directory is created on first write)."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def write(self, record: LLMCallRecord) -> None:
        """Append one record as one line."""
        line = (record.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            # One write() of the whole line on an O_APPEND fd: never interleaved.
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        """Close the file descriptor (a later write reopens it)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class CallsSummary(BaseModel):
    """Totals over a calls log."""

    calls: int = 0
    """Logical calls."""
    cache_hits: int = 0
    """Calls answered from the cache."""
    model_requests: int = 0
    """Requests sent to models."""
    retries: int = 0
    """Transient failures retried."""
    repair_rounds: int = 0
    """Structured-output repair rounds."""
    tokens_in: int = 0
    """Prompt tokens of the calls that reported their usage."""
    tokens_out: int = 0
    """Completion tokens of the calls that reported their usage."""
    tokens_unreported: int = 0
    """Calls whose token counts the provider did not report, left out of the two sums."""
    cost_usd: float = 0.0
    """Cost in USD of the calls that could be priced."""
    cost_unpriced: int = 0
    """Calls whose cost is unknown (no price for the model, no usage reported), left out of
    ``cost_usd`` rather than counted as $0."""
    latency_s: float = 0.0
    """Sum of call latencies in seconds."""
    errors: dict[str, int] = Field(default_factory=dict)
    """Failed calls by exception class."""
    models: dict[str, int] = Field(default_factory=dict)
    """Calls by model."""


def read_calls(path: Path | str) -> list[LLMCallRecord]:
    """Read a calls log; ``path`` may be the file or a run directory containing it."""
    p = Path(path)
    if p.is_dir():
        p = p / "llm_calls.jsonl"
    if not p.is_file():
        raise LLMError(f"no calls log at {p} (expected an llm_calls.jsonl or a run directory)")
    records: list[LLMCallRecord] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(LLMCallRecord.model_validate_json(line))
            except (ValidationError, json.JSONDecodeError) as exc:
                first = str(exc).splitlines()[0]
                raise LLMError(f"{p}:{lineno}: not an LLM call record ({first})") from None
    return records


def summarize_calls(records: list[LLMCallRecord]) -> CallsSummary:
    """Totals of a list of call records (pure)."""
    s = CallsSummary()
    tally = TokenTally.of((r.tokens_in, r.tokens_out) for r in records)
    s.tokens_in, s.tokens_out, s.tokens_unreported = (
        tally.tokens_in,
        tally.tokens_out,
        tally.unreported,
    )
    cost = CostTally.of(r.cost_usd for r in records)
    s.cost_usd, s.cost_unpriced = cost.cost_usd, cost.unpriced
    for r in records:
        s.calls += 1
        s.cache_hits += r.cache_hit
        s.model_requests += r.model_requests
        s.retries += r.retries
        s.repair_rounds += r.repair_rounds
        s.latency_s += r.latency_s
        if r.error:
            s.errors[r.error] = s.errors.get(r.error, 0) + 1
        s.models[r.model] = s.models.get(r.model, 0) + 1
    return s
