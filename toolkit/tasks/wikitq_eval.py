"""The official WikiTableQuestions evaluator (``evaluator.py`` v1.0.2), ported to Python 3.

Semantics kept exactly: ``normalize`` (diacritics, quotes, dashes, trailing citations,
trailing parentheses, outer quotes, one final '.', whitespace, lower case), typed values
(Number, Date, String) built from the gold's canonical form or the prediction's own text,
matching (normalised strings equal, numbers within 1e-6, dates with equal (y, m, d)) and
set equality after de-duplication. Python 2 ``int()``/``float()`` did not accept ``_``
digit separators, so the port rejects them too.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_CITATIONS = re.compile(r"((?<!^)\[[^\]]*\]|\[\d+\]|[•♦†‡*#+])*$")
_PARENTHESES = re.compile(r"(?<!^)( \([^)]*\))*$")
_OUTER_QUOTES = re.compile(r'^"([^"]*)"$')


def normalize(text: str) -> str:
    """Normalise a string the way the official evaluator does."""
    # Remove diacritics.
    text = "".join(
        c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn"
    )
    # Normalise quotes and dashes.
    text = re.sub(r"[‘’´`]", "'", text)
    text = re.sub(r"[“”]", '"', text)
    text = re.sub(r"[‐‑‒–—−]", "-", text)
    while True:
        old = text
        text = _CITATIONS.sub("", text.strip())
        text = _PARENTHESES.sub("", text.strip())
        text = _OUTER_QUOTES.sub(r"\1", text.strip())
        if text == old:
            break
    if text and text[-1] == ".":
        text = text[:-1]
    return re.sub(r"\s+", " ", text).lower().strip()


@dataclass(frozen=True)
class StringValue:
    """A value compared only by its normalised string."""

    normalized: str

    def key(self) -> tuple[object, ...]:
        """Identity for de-duplication (the official ``__eq__``)."""
        return ("S", self.normalized)


@dataclass(frozen=True)
class NumberValue:
    """A number; ``amount`` is an int when within 1e-6 of one."""

    amount: float
    normalized: str

    def key(self) -> tuple[object, ...]:
        """Identity for de-duplication (the official ``__eq__``)."""
        return ("N", self.amount)


@dataclass(frozen=True)
class DateValue:
    """A date ``(year, month, day)``; -1 marks an unknown field."""

    ymd: tuple[int, int, int]
    normalized: str

    def key(self) -> tuple[object, ...]:
        """Identity for de-duplication (the official ``__eq__``)."""
        return ("D", self.ymd)


Value = StringValue | NumberValue | DateValue


def parse_number(text: str) -> float | None:
    """The official ``NumberValue.parse``: int, else finite float, else None."""
    if "_" in text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        amount = float(text)
    except ValueError:
        return None
    if math.isnan(amount) or math.isinf(amount):
        return None
    return amount


def parse_date(text: str) -> tuple[int, int, int] | None:
    """The official ``DateValue.parse``: ``yyyy-mm-dd`` with ``xx``/``xxxx`` as unknown."""
    parts = text.lower().split("-")
    if len(parts) != 3 or any("_" in p for p in parts):
        return None
    try:
        year = -1 if parts[0] in ("xx", "xxxx") else int(parts[0])
        month = -1 if parts[1] == "xx" else int(parts[1])
        day = -1 if parts[2] == "xx" else int(parts[2])
    except ValueError:
        return None
    if year == month == day == -1:
        return None
    if not (month == -1 or 1 <= month <= 12) or not (day == -1 or 1 <= day <= 31):
        return None
    return (year, month, day)


def _number(amount: float, original: str) -> NumberValue:
    value = int(amount) if abs(amount - round(amount)) < 1e-6 else float(amount)
    return NumberValue(amount=value, normalized=normalize(original))


def to_value(original: str, canon: str | None = None) -> Value:
    """Type a string as Number, Date or String (from ``canon`` when given, as for gold)."""
    source = canon if canon else original
    amount = parse_number(source)
    if amount is not None:
        return _number(amount, original)
    ymd = parse_date(source)
    if ymd is not None:
        if ymd[1] == ymd[2] == -1:
            return _number(ymd[0], original)
        return DateValue(ymd=ymd, normalized=normalize(original))
    return StringValue(normalized=normalize(original))


def to_value_list(originals: Sequence[str], canons: Sequence[str] | None = None) -> list[Value]:
    """Values of ``originals``, de-duplicated by the official equality (first one kept)."""
    if canons is not None and len(canons) != len(originals):
        raise ValueError("originals and canonical values differ in length")
    pairs = zip(originals, canons if canons is not None else [None] * len(originals), strict=True)
    seen: set[tuple[object, ...]] = set()
    values: list[Value] = []
    for original, canon in pairs:
        value = to_value(original, canon)
        if value.key() not in seen:
            seen.add(value.key())
            values.append(value)
    return values


def values_match(target: Value, predicted: Value) -> bool:
    """The official ``target.match(predicted)``."""
    if target.normalized == predicted.normalized:
        return True
    if isinstance(target, NumberValue) and isinstance(predicted, NumberValue):
        return abs(target.amount - predicted.amount) < 1e-6
    if isinstance(target, DateValue) and isinstance(predicted, DateValue):
        return target.ymd == predicted.ymd
    return False


def check_denotation(targets: Sequence[Value], predictions: Sequence[Value]) -> bool:
    """Correct when both sets have the same size and every target matches a prediction."""
    if len(targets) != len(predictions):
        return False
    return all(any(values_match(t, p) for p in predictions) for t in targets)
