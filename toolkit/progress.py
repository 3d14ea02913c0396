"""A small text progress bar for long work (rollouts, data checks) on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A small progress bar on stderr: done/total, pass count, seconds per task, ETA.

    On a terminal it redraws one line; elsewhere (logs, CI) it prints a line per 10%.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        done: int = 0,
        passed: int = 0,
        stream: TextIO | None = None,
        unit: str = "task",
        counts_passes: bool = True,
    ) -> None:
        """Start at ``done`` finished units of ``total`` (``passed`` of them passing).

        ``unit`` names what is counted (``s/run`` for an index); ``counts_passes=False``
        leaves out the pass count, for work that neither passes nor fails.
        """
        self.label, self.total, self.done, self.passed = label, total, done, passed
        self.unit, self.counts_passes = unit, counts_passes
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.new = 0
        self._last_decile = -1

    def line(self) -> str:
        """The current status line."""
        width = 24
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.perf_counter() - self.started
        rate = f"{elapsed / self.new:.1f} s/{self.unit}" if self.new else f"-- s/{self.unit}"
        eta = ""
        if self.new and self.done < self.total:
            eta = f" eta {elapsed / self.new * (self.total - self.done):.0f}s"
        passes = f" pass {self.passed}/{self.done}" if self.counts_passes else ""
        return f"{self.label} [{bar}] {self.done}/{self.total}{passes} {rate}{eta}"

    def update(self, passed: bool) -> None:
        """Count one finished task and redraw."""
        self.done += 1
        self.new += 1
        self.passed += passed
        self.draw()

    def draw(self) -> None:
        """Write the status (redraw on a terminal, every 10% elsewhere)."""
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            return
        decile = int(10 * self.done / self.total) if self.total else 10
        if decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
