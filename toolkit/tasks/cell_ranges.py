"""Parse SpreadsheetBench ``answer_position`` strings into sheet + cell ranges.

Follows the official evaluator: the text is split on ``,``; a part is ``Sheet!Range`` or a bare
range (meaning the answer workbook's first sheet); quotes around the sheet name *and* around
the range are stripped, so the data's odd forms (``Analyse'!D5:K12``,
``'Sheet1!'A1:A50``) parse as upstream parses them. Beyond upstream, a comma inside a
sheet name (``'a,b'!A1``) is kept, and ``$`` anchors are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel

from toolkit.tasks.base import TaskError

_CELL = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]+)$")
_ENDS_WITH_RANGE = re.compile(r"\$?[A-Za-z]{1,3}\$?[0-9]+(:\$?[A-Za-z]{1,3}\$?[0-9]+)?'?\s*$")
MAX_CELLS = 1_000_000


def column_index(letters: str) -> int:
    """1-based index of a column name: ``A`` -> 1, ``AA`` -> 27."""
    index = 0
    for ch in letters.upper():
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index


def column_letters(index: int) -> str:
    """Column name of a 1-based index: 27 -> ``AA``."""
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def parse_cell(ref: str) -> tuple[int, int]:
    """``(column, row)``, both 1-based, of a reference like ``B7`` or ``$B$7``.

    Raises:
        TaskError: not a cell reference.
    """
    match = _CELL.match(ref.strip())
    if not match or int(match.group(2)) == 0:
        raise TaskError(f"not a cell reference: {ref!r}")
    return column_index(match.group(1)), int(match.group(2))


class CellRange(BaseModel):
    """A rectangle of cells on one sheet (``sheet=None``: the answer's first sheet)."""

    sheet: str | None
    min_col: int
    min_row: int
    max_col: int
    max_row: int

    def cells(self) -> Iterator[str]:
        """Cell names row by row, e.g. ``A1``, ``B1``, ``A2``, ``B2``."""
        for row in range(self.min_row, self.max_row + 1):
            for col in range(self.min_col, self.max_col + 1):
                yield f"{column_letters(col)}{row}"

    @property
    def size(self) -> int:
        """Number of cells."""
        return (self.max_col - self.min_col + 1) * (self.max_row - self.min_row + 1)

    def __str__(self) -> str:
        ref = f"{column_letters(self.min_col)}{self.min_row}"
        if self.size > 1:
            ref += f":{column_letters(self.max_col)}{self.max_row}"
        return f"'{self.sheet}'!{ref}" if self.sheet is not None else ref


def _split_parts(text: str) -> list[str]:
    """Split on commas, re-joining pieces until each part ends with a cell range."""
    parts: list[str] = []
    pending = ""
    for piece in text.split(","):
        pending = f"{pending},{piece}" if pending else piece
        if _ENDS_WITH_RANGE.search(pending):
            parts.append(pending)
            pending = ""
    if pending:
        parts.append(pending)
    return parts


def parse_answer_position(text: str) -> list[CellRange]:
    """Parse an ``answer_position`` such as ``'Sheet1'!A1:B5,C3`` into ranges.

    Raises:
        TaskError: empty text, a bad cell reference or a range over a million cells.
    """
    if not isinstance(text, str) or not text.strip():
        raise TaskError(f"answer_position is empty or not a string: {text!r}")
    ranges = []
    for part in _split_parts(text.strip()):
        part = part.strip()
        if "!" in part:
            sheet, ref = part.rsplit("!", 1)
            sheet = sheet.strip().strip("'")
            if not sheet:
                raise TaskError(f"answer_position part {part!r} has an empty sheet name")
        else:
            sheet, ref = None, part
        ref = ref.strip().strip("'")
        start, _, end = ref.partition(":")
        c1, r1 = parse_cell(start)
        c2, r2 = parse_cell(end) if end else (c1, r1)
        cell_range = CellRange(
            sheet=sheet,
            min_col=min(c1, c2),
            min_row=min(r1, r2),
            max_col=max(c1, c2),
            max_row=max(r1, r2),
        )
        if cell_range.size > MAX_CELLS:
            raise TaskError(f"answer_position range {part!r} has over {MAX_CELLS} cells")
        ranges.append(cell_range)
    return ranges
