"""Stashed KV states of conversations taking turns on one llama.cpp context."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from toolkit.llm import local
from toolkit.llm.kv_states import StateCache, common_prefix


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix(np.array([7, 8]), [7, 8]) == 2


def test_best_match_and_superseded_entries() -> None:
    cache = StateCache(budget_bytes=100)
    cache.stash([1, 2, 3], "a1", 10)
    cache.stash([1, 9, 9], "b1", 10)
    entry, length = cache.best([1, 2, 3, 4])
    assert entry is not None and entry.state == "a1" and length == 3
    # A later turn of conversation a supersedes its earlier state.
    cache.stash([1, 2, 3, 4, 5], "a2", 10)
    assert sorted(e.state for e in cache.entries) == ["a2", "b1"]
    assert cache.best([5])[0] is None


def test_least_recently_used_leaves_first_within_the_budget() -> None:
    cache = StateCache(budget_bytes=25)
    cache.stash([1], "one", 10)
    cache.stash([2], "two", 10)
    cache.take(cache.best([1])[0])  # "one" used again: "two" is now the oldest
    cache.stash([3], "three", 10)
    assert sorted(e.state for e in cache.entries) == ["one", "three"]
    cache.stash([4], "huge", 26)  # bigger than the budget: not kept
    assert "huge" not in {e.state for e in cache.entries}
    assert cache.used_bytes <= 25


@dataclass
class FakeState:
    input_ids: np.ndarray
    n_tokens: int
    llama_state: bytes = b"x" * 100
    scores: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.float32))
    seed: int = 1


class FakeLlama:
    """What _switch_conversation uses of llama_cpp.Llama: tokens held, save/load, seed."""

    def __init__(self) -> None:
        self._input_ids = np.zeros(4096, dtype=np.intc)
        self.n_tokens = 0
        self._seed = 99
        self.loads = 0

    def hold(self, tokens: list[int]) -> None:
        self._input_ids[: len(tokens)] = tokens
        self.n_tokens = len(tokens)

    def save_state(self) -> FakeState:
        return FakeState(input_ids=self._input_ids.copy(), n_tokens=self.n_tokens, seed=1)

    def load_state(self, state: FakeState) -> None:
        self._input_ids = state.input_ids.copy()
        self.n_tokens = state.n_tokens
        self._seed = state.seed
        self.loads += 1


def loaded(llama: FakeLlama) -> local._LoadedModel:
    return local._LoadedModel(
        llama=llama, formatter=None, lock=threading.Lock(), n_ctx=4096, states=StateCache()
    )


def turn(model: local._LoadedModel, prompt: list[int]) -> None:
    """One call: switch, then (as _prefill + generation would) hold the prompt + 10 tokens."""
    local._switch_conversation(model, prompt)
    model.llama.hold([*prompt, *range(9000, 9010)])
    model.canonical = len(prompt) // local.PREFILL_CHUNK * local.PREFILL_CHUNK


def test_interleaved_conversations_restore_their_own_state() -> None:
    system = list(range(100))  # shared prefix (system prompt + skill)
    a = system + list(range(1000, 1600))
    b = system + list(range(2000, 2600))
    model = loaded(FakeLlama())
    turn(model, a)
    turn(model, b)  # overwrites a: a is stashed first
    assert model.states.stashes == 1 and model.llama.loads == 0
    turn(model, a + [5] * 50)  # a's next turn: b stashed, a restored
    assert model.llama.loads == 1 and model.states.hits == 1
    assert model.llama._seed == 99  # restoring does not rewind the sampling seed
    turn(model, b + [6] * 50)
    assert model.llama.loads == 2
    # a's latest aligned prompt (its first one is superseded) and b's restored one.
    held = sorted((int(e.tokens[100]), len(e.tokens)) for e in model.states.entries)
    assert held == [(1000, 704), (2000, 640)]


def test_continuing_the_same_conversation_stashes_nothing() -> None:
    model = loaded(FakeLlama())
    prompt = list(range(700))
    for extra in range(3):
        prompt = prompt + list(range(5000 + 100 * extra, 5100 + 100 * extra))
        turn(model, prompt)
    assert model.states.stashes == 0 and model.llama.loads == 0


def test_state_cache_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local.STATE_CACHE_ENV, "0")
    assert local._env_int(local.STATE_CACHE_ENV, 2048, minimum=0) == 0
    model = local._LoadedModel(
        llama=FakeLlama(), formatter=None, lock=threading.Lock(), n_ctx=4096, states=None
    )
    turn(model, list(range(600)))
    turn(model, list(range(1000, 1600)))
    assert model.llama.loads == 0
