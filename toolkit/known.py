"""Figures a provider may not report, and the sums taken over them (pure).

A model call's token counts and its cost are measured by the provider or priced by litellm,
and either can be missing: a server that sends no ``usage``, an imported harness that kept
none, a model litellm has no price for. Such a figure is recorded as ``None``, never as 0: a
0 reads as measured, pulls every mean down and lets a limit believe nothing was spent. The
rule, wherever such figures are kept (:mod:`toolkit.tokens` for token counts,
:mod:`toolkit.cost` for costs):

* one unit's figure (a call, a step, a trajectory, an analysis, a merge) is ``X | None``; a
  figure made of parts (a trajectory's steps, a call's retries and repair round) is unknown
  when any part is: a total with a missing term is not a total (:func:`add_known`);
* a sum or a mean over many units is taken over the units whose figure is known, and says
  how many were left out (:func:`unreported_note`): ``2,766 (3 of 100 tasks unreported)``,
  never a silent 0.

A reply from the response cache is no unknown: no request was made, so it spent 0 tokens and
$0, measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

N = TypeVar("N", int, float)


def add_known(a: N | None, b: N | None) -> N | None:
    """``a + b``, or None when either is unknown."""
    return None if a is None or b is None else a + b


def sum_known(values: Iterable[N | None], start: N) -> N | None:
    """``start`` plus every value, or None when any of them is unknown."""
    total: N | None = start
    for value in values:
        total = add_known(total, value)
    return total


def unreported_text(unreported: int, units: int, noun: str, word: str = "unreported") -> str:
    """``3 of 100 tasks unreported``, or nothing when every unit reported its figure.

    ``word`` says what is missing (``unpriced`` for costs)."""
    if unreported <= 0:
        return ""
    return f"{unreported:,} of {max(units, unreported):,} {noun} {word}"


def unreported_note(unreported: int, units: int, noun: str, word: str = "unreported") -> str:
    """`` (3 of 100 tasks unreported)``, or nothing when every unit reported its figure."""
    text = unreported_text(unreported, units, noun, word)
    return f" ({text})" if text else ""


def predates_unknown(data: object, version: int) -> bool:
    """Whether ``data`` (a record as read, before validation) is of a format older than
    ``version``, the first of its kind that may hold an unknown (null) figure. A record that
    names no version is taken as current: every stored record names its own."""
    stored = data.get("schema_version") if isinstance(data, dict) else None
    return isinstance(stored, int) and stored < version


def zero_absent(data: dict, fields: tuple[str, ...]) -> dict:
    """``data`` with each of ``fields`` it leaves out set to 0: how a format without unknown
    figures read an absent one (its model's default), kept so old files read as they did."""
    missing = {name: 0 for name in fields if name not in data}
    return {**data, **missing} if missing else data
