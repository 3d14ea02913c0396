"""Content-addressed on-disk cache of model responses.

The key is the sha256 of the canonical JSON of (model, messages, params, schema). Each entry
is one small JSON file at ``<dir>/<key[:2]>/<key[2:4]>/<key>.json``, so a lookup is one
``open`` whatever the number of entries. Writes go to a temp file in the same directory and
are moved into place with ``os.replace``: a process killed mid-write leaves at worst a stray
temp file, never a truncated entry. An entry that fails to parse is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from toolkit.atomic import write_atomic

CACHE_SCHEMA_VERSION = 1

# Call parameters that do not change what the model answers, so they stay out of the key.
_NON_SEMANTIC_PARAMS = frozenset(
    {"api_key", "timeout", "num_retries", "max_retries", "metadata", "headers", "extra_headers"}
)


class CacheEntry(BaseModel):
    """One cached model response."""

    schema_version: int = CACHE_SCHEMA_VERSION
    """Format version of this record."""
    key: str
    """The sha256 cache key this entry is stored under."""
    model: str
    """Model string of the call."""
    text: str
    """The final response text (after any repair round)."""
    tokens_in: int | None = 0
    """Prompt tokens the original call used; None when its provider did not report them (an
    older toolkit reads such an entry as a miss, as it reads any entry it cannot parse)."""
    tokens_out: int | None = 0
    """Completion tokens the original call used; None when not reported."""
    cost_usd: float | None = 0.0
    """Cost of the original call in USD (0 for local and fake models); None when it could
    not be priced (a hit itself costs 0: no request is made)."""
    finish_reason: str | None = None
    """Why the reply ended (``length``: cut at max_tokens); None in entries written before
    it was kept, read as unknown."""


def cache_key(
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    schema: dict[str, Any] | None,
) -> str:
    """Return the sha256 hex digest identifying a call's (model, messages, params, schema)."""
    semantic = {k: v for k, v in params.items() if k not in _NON_SEMANTIC_PARAMS and v is not None}
    payload = json.dumps(
        {"model": model, "messages": messages, "params": semantic, "schema": schema},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """A directory of :class:`CacheEntry` files addressed by :func:`cache_key`."""

    def __init__(self, directory: Path | str) -> None:
        """Use ``directory`` (created lazily on first write)."""
        self.directory = Path(directory)

    def path_for(self, key: str) -> Path:
        """The file an entry with ``key`` lives in."""
        return self.directory / key[:2] / key[2:4] / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry for ``key``, or None if absent or unreadable (a miss)."""
        try:
            with open(self.path_for(key), "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        try:
            entry = CacheEntry.model_validate_json(data)
        except ValidationError:
            return None
        return entry if entry.key == key else None

    def put(self, entry: CacheEntry) -> None:
        """Store ``entry`` atomically (temp file in the same dir, then ``os.replace``)."""
        target = self.path_for(entry.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, entry.model_dump_json(), prefix=".tmp-", suffix=".json")

    def __len__(self) -> int:
        """Number of entries on disk (walks the directory: for tests and tooling only)."""
        if not self.directory.exists():
            return 0
        return sum(1 for _ in self.directory.glob("*/*/*.json") if not _.name.startswith("."))
