"""The answer-leak filter: a lesson must not carry the gold answer of the task it came from.

An analyst sees the gold answer (in the verdict, or through the verifier); a lesson that
writes it into the skill teaches the answer key, not a method, and would inflate any
evaluation that reuses the task. :func:`leaked_values` finds gold values in a text; the
analyse stage drops every edit whose content contains one.

What counts as a value (short values occur everywhere by chance, so they are not evidence):
a number with at least 2 significant digits (``18``, ``3.5``, ``2024``; matched as a whole
number, so ``180`` does not match ``18``; ``18.0`` matches ``18``), or a text of at least 4
characters (matched case-insensitively on word boundaries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = re.compile(r"^[-+]?\$?\d[\d,]*(\.\d+)?%?$")
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w]|\.\d)")


def _as_number(text: str) -> float | None:
    cleaned = text.strip().lstrip("+$").rstrip("%").replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _significant_digits(value: float) -> int:
    return len(f"{abs(value):g}".replace(".", "").lstrip("0").split("e")[0])


def leaked_values(text: str, gold: Iterable[str]) -> list[str]:
    """The gold values that occur in ``text`` (see the module docstring for the rules)."""
    found = []
    numbers_in_text: set[float] | None = None
    for raw in gold:
        value = raw.strip()
        if not value:
            continue
        if _NUMBER.match(value):
            number = _as_number(value)
            if number is None or _significant_digits(number) < 2:
                continue
            if numbers_in_text is None:
                numbers_in_text = {
                    n for m in _NUMBER_IN_TEXT.findall(text) if (n := _as_number(m)) is not None
                }
            if number in numbers_in_text:
                found.append(value)
        elif len(value) >= 4:
            pattern = r"(?<!\w)" + re.escape(value) + r"(?!\w)"
            if re.search(pattern, text, re.IGNORECASE):
                found.append(value)
    return found


def mask_values(text: str, gold: Iterable[str]) -> str:
    """``text`` with every gold value (as :func:`leaked_values` finds them) replaced by
    ``<gold>``: what the verifier tells the agentic analyst, which must find the answer."""
    for value in sorted({v.strip() for v in gold if v.strip()}, key=len, reverse=True):
        text = re.sub(r"(?<!\w)" + re.escape(value) + r"(?!\w)", "<gold>", text, flags=re.I)
    return text
