"""Saved llama.cpp KV states of live conversations, found again by token prefix.

One llama.cpp context holds one conversation's prompt at a time. When tasks take turns on it
(``--parallel`` > 1), every call used to re-evaluate its whole prompt because the previous
call belonged to another conversation: minutes per task for prompts of a few thousand tokens.
Before a call overwrites a context whose prompt it does not extend, the local provider stashes
that state here; a later call of the same conversation (whose prompt extends the stashed
tokens) restores it and evaluates only its new tokens.

Pure bookkeeping: states are opaque objects with a byte size. The caller decides what a state
is (``llama_cpp.LlamaState``) and how long a usable prefix must be. Eviction is least recently
used within a byte budget, and a stashed state that a newer one of the same conversation
extends is dropped at once (its tokens are a prefix of the newer one's, so it can never be the
better match again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_BUDGET_BYTES = 2 * 1024**3
"""RAM for stashed states: ~60-100 MB each for the 1.5B at 2k tokens, so 20+ conversations."""


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    left = np.asarray(a[:n])
    right = np.asarray(b[:n], dtype=left.dtype)
    mismatch = np.flatnonzero(left != right)
    return int(mismatch[0]) if mismatch.size else n


@dataclass
class Stashed:
    """One stashed context: the prompt tokens its KV holds (aligned), and the state."""

    tokens: np.ndarray
    state: Any
    size: int
    tick: int = 0


@dataclass
class StateCache:
    """States keyed by the prompt tokens they hold; least recently used out first."""

    budget_bytes: int = DEFAULT_BUDGET_BYTES
    entries: list[Stashed] = field(default_factory=list)
    hits: int = 0
    stashes: int = 0
    _clock: int = 0

    @property
    def used_bytes(self) -> int:
        """Bytes held by the stashed states."""
        return sum(entry.size for entry in self.entries)

    def best(self, prompt: Sequence[int]) -> tuple[Stashed | None, int]:
        """The entry sharing the longest prefix with ``prompt``, and that prefix's length."""
        found: Stashed | None = None
        length = 0
        for entry in self.entries:
            common = common_prefix(entry.tokens, prompt)
            if common > length:
                found, length = entry, common
        return found, length

    def take(self, entry: Stashed) -> Any:
        """Mark ``entry`` used (it is being restored) and return its state."""
        self._clock += 1
        entry.tick = self._clock
        self.hits += 1
        return entry.state

    def stash(self, tokens: Sequence[int] | np.ndarray, state: Any, size: int) -> None:
        """Keep ``state`` (holding ``tokens``), dropping what it supersedes or what no longer
        fits the budget (oldest use first). A state bigger than the budget is not kept."""
        tokens = np.array(tokens, copy=True)
        self.entries = [
            e
            for e in self.entries
            if not (
                len(e.tokens) <= len(tokens) and common_prefix(e.tokens, tokens) == len(e.tokens)
            )
        ]
        if size > self.budget_bytes:
            return
        self._clock += 1
        self.entries.append(Stashed(tokens=tokens, state=state, size=size, tick=self._clock))
        self.stashes += 1
        self.entries.sort(key=lambda e: e.tick)
        while self.used_bytes > self.budget_bytes:
            self.entries.pop(0)

    def clear(self) -> None:
        """Forget every stashed state."""
        self.entries.clear()
