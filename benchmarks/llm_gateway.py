"""Benchmark the LLM gateway.

Figures:
  cache_hit_ms              median latency of a cache hit through complete() with 100,000
                            entries in the cache (calls log on)
  cached_rerun_model_calls  model requests when a 1,000-call fake-model workload runs again
  throughput_ratio          gateway (cache off) vs bare litellm.acompletion + semaphore, on the
                            fake provider at 200 ms latency, concurrency 64 (best of rounds)
  throughput_efficiency     gateway calls/s over the ideal (concurrency / latency)
  overhead_pct              extra wall time of the gateway over llama-cpp-python called
                            directly, same embedded model and prompts (skipped by --no-model;
                            generation-speed noise on a busy machine dominates it)
  overhead_outside_model_pct  the same, counting only time spent outside llama.cpp's
                            create_completion (what the gateway and litellm add), robust to
                            that noise

The last line printed is one JSON object with these keys.

    python benchmarks/llm_gateway.py            # everything (needs the embedded model)
    python benchmarks/llm_gateway.py --no-model # fake-model parts only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from toolkit.llm import CacheEntry, Gateway, LLMConfig, fake_model, get_litellm  # noqa: E402


def _msgs(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def bench_cache_hit(tmp: Path, entries: int, samples: int) -> float:
    gw = Gateway(
        LLMConfig(model="fake/echo", cache_dir=tmp / "hitcache", calls_log=tmp / "hit_calls.jsonl")
    )
    t0 = time.perf_counter()
    for i in range(entries):
        key = gw.cache_key_for(_msgs(f"prompt number {i}"))
        gw.cache.put(CacheEntry(key=key, model="fake/echo", text=f"answer {i}"))
    print(f"cache: wrote {entries:,} entries in {time.perf_counter() - t0:.1f}s")
    with fake_model(lambda m: "miss") as model:  # a miss would show up as a model call
        gw.config.model = str(model)
        rng = random.Random(0)
        picks = [rng.randrange(entries) for _ in range(samples)]
        # Keys were made for fake/echo; ask that model so every lookup is a hit.
        gw.config.model = "fake/echo"
        times = []
        for i in picks:
            t = time.perf_counter()
            text = gw.complete(_msgs(f"prompt number {i}"))
            times.append(time.perf_counter() - t)
            assert text == f"answer {i}", text
        assert model.calls == 0
    gw.close()
    median_ms = statistics.median(times) * 1000
    p99 = sorted(times)[int(0.99 * len(times))] * 1000
    print(f"cache hit via complete(): median {median_ms:.3f} ms, p99 {p99:.3f} ms ({samples} hits)")
    return median_ms


def bench_cached_rerun(tmp: Path, calls: int) -> int:
    gw = Gateway(
        LLMConfig(
            model="fake/echo",
            cache_dir=tmp / "reruncache",
            calls_log=tmp / "rerun_calls.jsonl",
            concurrency=32,
        )
    )

    async def workload(model: str) -> list[str]:
        return await asyncio.gather(*(gw.acomplete(f"task {i}", model=model) for i in range(calls)))

    with fake_model(lambda m: m[-1]["content"].upper(), name="bench-rerun") as model:
        t = time.perf_counter()
        first = asyncio.run(workload(model))
        t_first = time.perf_counter() - t
        first_calls = model.calls
        t = time.perf_counter()
        second = asyncio.run(workload(model))
        t_second = time.perf_counter() - t
        rerun_calls = model.calls - first_calls
    assert first == second
    gw.close()
    print(
        f"rerun: first run {first_calls} model calls in {t_first:.2f}s, "
        f"rerun {rerun_calls} model calls in {t_second:.2f}s"
    )
    return rerun_calls


def bench_throughput(
    tmp: Path, calls: int, latency: float, concurrency: int, rounds: int
) -> dict[str, float]:
    litellm = get_litellm()
    ideal = concurrency / latency
    gw = Gateway(
        LLMConfig(
            model="fake/echo",
            cache=False,
            cache_dir=tmp / "tpcache",
            calls_log=tmp / "tp_calls.jsonl",
            concurrency=concurrency,
        )
    )

    async def bare(model: str) -> float:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with sem:
                r = await litellm.acompletion(model=model, messages=_msgs(f"q{i}"))
            return r.choices[0].message.content

        t = time.perf_counter()
        out = await asyncio.gather(*(one(i) for i in range(calls)))
        elapsed = time.perf_counter() - t
        assert out == [f"q{i}" for i in range(calls)]
        return calls / elapsed

    async def gateway(model: str) -> float:
        t = time.perf_counter()
        out = await asyncio.gather(*(gw.acomplete(f"q{i}", model=model) for i in range(calls)))
        elapsed = time.perf_counter() - t
        assert out == [f"q{i}" for i in range(calls)]
        return calls / elapsed

    bare_runs: list[float] = []
    gw_runs: list[float] = []
    with fake_model(lambda m: m[-1]["content"], latency=latency, name="bench-tp") as model:
        asyncio.run(bare(model))  # warm-up: litellm's first-call setup
        for _ in range(rounds):
            bare_runs.append(asyncio.run(bare(model)))
            gw_runs.append(asyncio.run(gateway(model)))
    gw.close()
    best_bare, best_gw = max(bare_runs), max(gw_runs)
    print(
        f"throughput ({calls} calls, {latency * 1000:.0f} ms latency, concurrency {concurrency}, "
        f"ideal {ideal:.0f}/s):"
    )
    print("  bare litellm: " + ", ".join(f"{x:.0f}/s" for x in bare_runs))
    print("  gateway:      " + ", ".join(f"{x:.0f}/s" for x in gw_runs))
    print(
        f"  best: bare {best_bare:.0f}/s ({best_bare / ideal:.0%} of ideal), "
        f"gateway {best_gw:.0f}/s ({best_gw / ideal:.0%} of ideal), "
        f"ratio {best_gw / best_bare:.3f}"
    )
    return {"ratio": best_gw / best_bare, "gateway_eff": best_gw / ideal}


PROMPTS = [
    "Write a Python function that returns the factorial of n.",
    "Explain in two sentences what a git commit is.",
    "List three prime numbers greater than 100.",
    "What does the HTTP status code 404 mean?",
    "Write a one-line shell command that counts lines in all .py files.",
    "Give a short definition of a hash table.",
    "What is 17 * 23? Show the steps.",
    "Name two differences between a list and a tuple in Python.",
]


def bench_overhead(tmp: Path, model: str, prompts: int, max_tokens: int) -> tuple[float, float]:
    from toolkit.llm import model_store
    from toolkit.llm.local import load_model

    path = model_store.resolve(model)
    llama = load_model(path)
    gw = Gateway(
        LLMConfig(
            model=model,
            cache=False,
            cache_dir=tmp / "localcache",
            calls_log=tmp / "local_calls.jsonl",
        )
    )
    params = {"max_tokens": max_tokens, "temperature": 0.0, "seed": 0}
    # Time spent inside llama.cpp's create_completion (both sides end up there), so the
    # time each side spends outside the model can be separated from generation noise.
    inner = {"s": 0.0}
    create_completion = llama.create_completion

    def timed_create_completion(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return create_completion(*a, **k)
        finally:
            inner["s"] += time.perf_counter() - t

    llama.create_completion = timed_create_completion

    outside = {"direct": 0.0, "via_gateway": 0.0}

    def direct(text: str) -> tuple[float, int, int]:
        llama.reset()  # no KV-prefix reuse from the previous call, for either side
        inner["s"] = 0.0
        t = time.perf_counter()
        r = llama.create_chat_completion(messages=_msgs(text), **params)
        elapsed = time.perf_counter() - t
        outside["direct"] += elapsed - inner["s"]
        return elapsed, r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]

    def via_gateway(text: str) -> tuple[float, int, int]:
        llama.reset()
        inner["s"] = 0.0
        t = time.perf_counter()
        r = gw.complete_full(_msgs(text), **params)
        elapsed = time.perf_counter() - t
        outside["via_gateway"] += elapsed - inner["s"]
        return elapsed, r.tokens_in, r.tokens_out

    via_gateway("warm up")  # litellm's first call and the provider's model lookup
    direct("warm up")
    outside.update(direct=0.0, via_gateway=0.0)
    d_total = g_total = 0.0
    d_tok = g_tok = 0
    d_times: list[float] = []
    g_times: list[float] = []
    for i, text in enumerate((PROMPTS * 4)[:prompts]):
        # Alternate which side goes first so neither always runs on a warmer CPU cache.
        order = (direct, via_gateway) if i % 2 == 0 else (via_gateway, direct)
        results = {fn.__name__: fn(text) for fn in order}
        d, g = results["direct"], results["via_gateway"]
        d_total += d[0]
        g_total += g[0]
        d_times.append(d[0])
        g_times.append(g[0])
        d_tok += d[2]
        g_tok += g[2]
        print(
            f"  prompt {i}: direct {d[0]:.2f}s ({d[1]}+{d[2]} tok), "
            f"gateway {g[0]:.2f}s ({g[1]}+{g[2]} tok)"
        )
    gw.close()
    overhead = (g_total / d_total - 1) * 100
    ratios = sorted(g / d for g, d in zip(g_times, d_times, strict=True))
    print(f"  per-prompt gateway/direct: median {statistics.median(ratios):.3f}")
    print(
        f"embedded model {model}: direct {d_total:.2f}s / {d_tok} tokens out, "
        f"gateway {g_total:.2f}s / {g_tok} tokens out, overhead {overhead:+.2f}%"
    )
    n = len(d_times)
    extra_ms = (outside["via_gateway"] - outside["direct"]) / n * 1000
    print(
        f"  time outside llama.cpp per call: direct {outside['direct'] / n * 1000:.1f} ms, "
        f"gateway {outside['via_gateway'] / n * 1000:.1f} ms; the gateway adds {extra_ms:.1f} ms "
        f"= {extra_ms / 1000 * n / d_total * 100:+.2f}% of direct wall time"
    )
    if d_tok != g_tok:
        per_tok = (g_total / max(g_tok, 1)) / (d_total / max(d_tok, 1)) * 100 - 100
        print(f"  (token counts differ; per-output-token overhead {per_tok:+.2f}%)")
    llama.create_completion = create_completion
    return overhead, extra_ms / 1000 * n / d_total * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-model", action="store_true", help="skip the embedded-model part")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--hit-samples", type=int, default=2000)
    parser.add_argument("--rerun-calls", type=int, default=1000)
    parser.add_argument("--tp-calls", type=int, default=640)
    parser.add_argument("--tp-rounds", type=int, default=3)
    parser.add_argument("--local-model", default=None, help="default: the embedded default")
    parser.add_argument("--local-prompts", type=int, default=8)
    parser.add_argument("--local-max-tokens", type=int, default=48)
    parser.add_argument(
        "--local-threads",
        type=int,
        default=1,
        help="llama.cpp threads for both sides; 1 keeps timings stable on a busy machine",
    )
    args = parser.parse_args()
    # Read by the local provider when it loads the model; the direct side shares that model.
    os.environ["TRACE2SKILL_LOCAL_THREADS"] = str(args.local_threads)

    get_litellm()
    with tempfile.TemporaryDirectory(prefix="t2s-llm-bench-") as d:
        tmp = Path(d)
        tp = bench_throughput(tmp, args.tp_calls, 0.2, 64, args.tp_rounds)
        rerun = bench_cached_rerun(tmp, args.rerun_calls)
        hit_ms = bench_cache_hit(tmp, args.entries, args.hit_samples)
        overhead = outside_pct = None
        if not args.no_model:
            from toolkit.llm.model_store import DEFAULT_MODEL

            overhead, outside_pct = bench_overhead(
                tmp, args.local_model or DEFAULT_MODEL, args.local_prompts, args.local_max_tokens
            )
    result = {
        "overhead_pct": None if overhead is None else round(overhead, 2),
        "cache_hit_ms": round(hit_ms, 3),
        "cached_rerun_model_calls": rerun,
        "throughput_ratio": round(tp["ratio"], 3),
        "throughput_efficiency": round(tp["gateway_eff"], 3),
        "overhead_outside_model_pct": None if outside_pct is None else round(outside_pct, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
