"""The on-disk response cache: addressing, atomic writes, and surviving SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from toolkit.llm import CacheEntry, Gateway, LLMConfig, ResponseCache, cache_key, fake_model


def test_key_is_canonical_and_ignores_non_semantic_params() -> None:
    msgs = [{"role": "user", "content": "q"}]
    a = cache_key("m", msgs, {"temperature": 0.1, "seed": 1}, None)
    b = cache_key("m", msgs, {"seed": 1, "temperature": 0.1, "api_key": "k", "timeout": 3}, None)
    assert a == b
    assert a != cache_key("m", msgs, {"temperature": 0.2, "seed": 1}, None)
    assert a != cache_key("m2", msgs, {"temperature": 0.1, "seed": 1}, None)
    assert a != cache_key("m", msgs, {"temperature": 0.1, "seed": 1}, {"type": "object"})


def test_put_get_roundtrip_and_layout(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache_key("m", [{"role": "user", "content": "q"}], {}, None)
    assert cache.get(key) is None
    cache.put(CacheEntry(key=key, model="m", text="answer", tokens_in=3))
    assert cache.get(key) == CacheEntry(key=key, model="m", text="answer", tokens_in=3)
    assert cache.path_for(key) == tmp_path / key[:2] / key[2:4] / f"{key}.json"
    assert len(cache) == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_entry_under_wrong_key_is_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    cache.put(CacheEntry(key="a" * 64, model="m", text="x"))
    cache.path_for("b" * 64).parent.mkdir(parents=True, exist_ok=True)
    os.replace(cache.path_for("a" * 64), cache.path_for("b" * 64))
    assert cache.get("b" * 64) is None


WRITER = textwrap.dedent(
    """
    import sys
    from toolkit.llm import Gateway, LLMConfig, fake_model
    cache_dir, n = sys.argv[1], int(sys.argv[2])
    gw = Gateway(LLMConfig(cache_dir=cache_dir, model="fake/echo"))
    big = "x" * 200_000  # large entries so the kill lands inside writes
    with fake_model(lambda m: m[-1]["content"] + big, name="killtest") as model:
        for i in range(n):
            gw.complete(f"q{i}", model=model)
            print(i, flush=True)
    """
)


def test_sigkill_mid_write_leaves_cache_consistent(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    n = 3000
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(cache_dir), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert proc.stdout is not None
    done = 0
    for line in proc.stdout:
        done = int(line) + 1
        if done >= 150:
            break
    time.sleep(0.05)  # let it get into further writes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    cache = ResponseCache(cache_dir)
    entries = [p for p in cache_dir.glob("*/*/*.json") if not p.name.startswith(".")]
    assert len(entries) >= 150
    for path in entries:  # every entry that has its final name is whole and valid
        entry = cache.get(path.stem)
        assert entry is not None, path
        assert entry.text.endswith("x" * 200_000)

    gw = Gateway(LLMConfig(cache_dir=cache_dir, model="fake/echo"))
    with fake_model(lambda m: m[-1]["content"] + "x" * 200_000, name="killtest") as model:
        for i in range(len(entries) + 20):
            assert gw.complete(f"q{i}", model=model).startswith(f"q{i}x")
        # Only the entries that never finished are asked of the model again.
        assert model.calls == 20
