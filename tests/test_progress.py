"""The text progress bar: what it says per unit, and how often it writes to a log."""

from __future__ import annotations

import io

from toolkit.progress import Progress


def test_a_log_gets_a_line_per_tenth_and_units_are_named() -> None:
    stream = io.StringIO()  # not a terminal
    bar = Progress("rollout", 40, stream=stream)
    for k in range(40):
        bar.update(k % 2 == 0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # the first, then one per 10%: not one per task
    assert lines[-1].startswith("rollout [########################] 40/40 pass 20/40 ")
    assert lines[-1].endswith(" s/task")
    # An index counts runs that neither pass nor fail (it said "pass 2/2 ... s/task").
    runs = io.StringIO()
    index = Progress("index", 2, stream=runs, unit="run", counts_passes=False)
    index.update(True)
    index.update(True)
    last = runs.getvalue().splitlines()[-1]
    assert "pass" not in last and last.endswith(" s/run") and " 2/2 " in last
