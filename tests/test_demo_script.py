"""`make demo`'s script: how it ends for each outcome of its evolve (a stand-in trace2skill)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("evolve_status", "demo_status"), [(5, 0), (1, 1)])
def test_a_run_that_learned_nothing_ends_the_demo_with_advice(
    tmp_path: Path, evolve_status: int, demo_status: int
) -> None:
    """Exit 5 (nothing learned: a small model's analyses all dropped) aborted the demo under
    `set -e`, so `make demo` failed; it is a real outcome, explained and exit 0. An error
    still fails it."""
    stand_in = tmp_path / "trace2skill"
    stand_in.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = evolve ]; then echo "Nothing learned: why"; exit {evolve_status}; fi\n'
    )
    stand_in.chmod(0o755)
    env = {**os.environ, "DEMO_TRACE2SKILL": str(stand_in), "DEMO_RUN_ID": "demo-test"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == demo_status, out
    assert ("the run learned nothing" in out) is (evolve_status == 5)
    assert "3/4" not in out  # no evolved skill to show either way
