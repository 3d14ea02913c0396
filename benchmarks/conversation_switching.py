"""Benchmark conversations taking turns on the embedded model's one llama.cpp context.

K conversations share a long system prompt (as tasks share the system prompt and skill) and
each adds its own task text; they run T turns each, interleaved round robin (A1 B1 C1 A2 ...)
as `--parallel K` schedules them. The same schedule runs twice in one process: with the KV
state cache (a conversation's state is stashed when another overwrites the context, restored
on its next turn) and without it (every turn re-evaluates its whole prompt). Replies must be
identical both ways (temperature 0, fixed seed): restoring never changes what is sampled.

Figures: wall seconds of each schedule, their ratio, prompt tokens per turn, restores, and
whether the replies matched. The last line printed is one JSON object.

    python benchmarks/conversation_switching.py                  # small tier, 3 x 3 turns
    python benchmarks/conversation_switching.py --tier default --conversations 4 --turns 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from toolkit.llm import get_litellm, model_store  # noqa: E402
from toolkit.llm import local as local_provider  # noqa: E402
from toolkit.llm.kv_states import StateCache  # noqa: E402

SYSTEM = (
    "You answer questions about tables. Read the table, find the rows the question needs, "
    "compute in code and reply with the answer only. Skill notes: check column names, "
    "normalise numbers before comparing, count rows with code rather than by eye. "
) * 12


def task_text(k: int) -> str:
    rows = "\n".join(f"| team {k}-{i} | {10 * k + i} | {i % 3} |" for i in range(25))
    header = "| team | points | titles |\n|---|---|---|"
    return f"Table {k}:\n{header}\n{rows}\nWhich team has most points?"


def schedule(model: str, conversations: int, turns: int) -> tuple[float, list[str], list[int]]:
    litellm = get_litellm()
    histories = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task_text(k)}]
        for k in range(conversations)
    ]
    replies: list[str] = []
    prompt_tokens: list[int] = []
    started = time.perf_counter()
    for _ in range(turns):
        for history in histories:
            response = litellm.completion(
                model=model, messages=history, temperature=0, seed=7, max_tokens=24
            )
            text = response.choices[0].message.content or ""
            replies.append(text)
            prompt_tokens.append(response.usage.prompt_tokens)
            history += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "Observation: ok. Go on."},
            ]
    return time.perf_counter() - started, replies, prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="small")
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    spec = model_store.get_tier(args.tier)
    model_store.install(args.tier)
    litellm = get_litellm()
    litellm.completion(model=spec.model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    (loaded,) = local_provider._loaded.values()

    figures: dict[str, float] = {}
    replies: dict[str, list[str]] = {}
    for mode in ("no_cache", "state_cache"):
        loaded.states = StateCache() if mode == "state_cache" else None
        loaded.llama.reset()
        loaded.canonical = 0
        wall, replies[mode], tokens = schedule(spec.model, args.conversations, args.turns)
        figures[f"{mode}_s"] = round(wall, 2)
        print(f"{mode}: {wall:.1f} s for {len(tokens)} turns, prompt tokens {tokens}")
    restores = loaded.states.hits if loaded.states else 0
    summary = {
        "model": spec.model,
        "conversations": args.conversations,
        "turns": args.turns,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **figures,
        "speedup": round(figures["no_cache_s"] / figures["state_cache_s"], 2),
        "restores": restores,
        "replies_identical": replies["no_cache"] == replies["state_cache"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
