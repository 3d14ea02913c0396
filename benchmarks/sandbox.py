"""Sandbox figures: worker start time and the python tool's round trip on a 100-row table.

Usage: .venv/bin/python benchmarks/sandbox.py [--calls 200]
The last line is one JSON object (python_tool_median_ms, worker_start_s, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from toolkit.sandbox import SandboxPool, check_protections

TABLE = "group,value\n" + "".join(f"g{i % 7},{i}\n" for i in range(100))
TOOL_CALL = (
    "import pandas as pd\n"
    "df = pd.read_csv('table.csv')\n"
    "print(df[df['value'] > 50].groupby('group')['value'].sum())"
)


async def measure(calls: int) -> dict[str, float | int | bool]:
    starts: list[float] = []
    for _ in range(3):
        async with SandboxPool(size=1) as pool:
            starts.extend(pool.worker_start_s)
    async with SandboxPool(size=1) as pool:
        session_s: list[float] = []
        for _ in range(20):
            t0 = time.perf_counter()
            async with pool.session({"table.csv": TABLE}) as sb:
                await sb.run("pass")
            session_s.append(time.perf_counter() - t0)
        async with pool.session({"table.csv": TABLE}) as sb:
            for _ in range(10):  # warm-up
                await sb.run(TOOL_CALL)
            tool_ms: list[float] = []
            for _ in range(calls):
                t0 = time.perf_counter()
                result = await sb.run(TOOL_CALL)
                tool_ms.append((time.perf_counter() - t0) * 1000)
                assert result.error is None, result.render()
            trivial_ms: list[float] = []
            for _ in range(calls):
                t0 = time.perf_counter()
                await sb.run("1")
                trivial_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "python_tool_median_ms": round(statistics.median(tool_ms), 3),
        "python_tool_p95_ms": round(sorted(tool_ms)[int(0.95 * len(tool_ms)) - 1], 3),
        "round_trip_median_ms": round(statistics.median(trivial_ms), 3),
        "session_open_close_median_ms": round(statistics.median(session_s) * 1000, 3),
        "worker_start_s": round(statistics.median(starts), 3),
        "calls": calls,
        "full_isolation": check_protections().full,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.calls))
    print(f"worker start (median of 3): {figures['worker_start_s']} s")
    print(f"session open+close (median of 20): {figures['session_open_close_median_ms']} ms")
    print(
        f"python tool call on 100 rows (median of {args.calls}): "
        f"{figures['python_tool_median_ms']} ms (p95 {figures['python_tool_p95_ms']} ms)"
    )
    print(f"bare round trip (median): {figures['round_trip_median_ms']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
