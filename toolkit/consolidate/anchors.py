"""Re-anchoring: an edit whose anchor drifted from the base text, moved onto its unique match.

The merge operator rewrites edits, and models copy anchors imperfectly (a changed space, a
dropped bullet). An anchor that no longer occurs in the base file is replaced only when the
intended text is unambiguous: the one anchor the cited child edits used that does occur once,
or else the one run of lines that equals the anchor once whitespace is ignored. Anything else
is left for the guardrails to reject (``anchor-missing``) or reported as ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from toolkit.patch import Edit

AnchorField = Literal["target_text", "old_text"]


def anchor_field(edit: Edit) -> AnchorField | None:
    """The field of ``edit`` that must match the file text exactly, if any."""
    if edit.op in ("insert_after", "insert_before"):
        return "target_text"
    if edit.op == "replace_in_section":
        return "old_text"
    return None


def _squash(text: str) -> str:
    return " ".join(text.split())


def _loose_matches(text: str, anchor: str) -> list[str]:
    """Exact spans of ``text`` (whole lines) equal to ``anchor`` up to whitespace."""
    want = [_squash(line) for line in anchor.strip("\n").split("\n")]
    if not any(want):
        return []
    lines = text.split("\n")
    width = len(want)
    return [
        "\n".join(lines[i : i + width])
        for i in range(len(lines) - width + 1)
        if [_squash(line) for line in lines[i : i + width]] == want
    ]


def reanchor(
    edit: Edit, text: str | None, child_anchors: Sequence[str]
) -> tuple[Edit | None, str | None]:
    """Return ``(edit, None)`` unchanged or re-anchored, or ``(None, reason)`` when ambiguous.

    Args:
        edit: the operator's edit.
        text: the base text of the edit's file (None when the file does not exist).
        child_anchors: the anchors of the same field in the child edits it cites.
    """
    field = anchor_field(edit)
    anchor = getattr(edit, field) if field else None
    if field is None or not anchor or text is None or text.count(anchor) >= 1:
        return edit, None
    # 1. the cited children's own anchors, when exactly one of them occurs exactly once
    found = {a for a in child_anchors if a and text.count(a) == 1}
    if len(found) == 1:
        return _moved(edit, field, found.pop()), None
    if len(found) > 1:
        return None, f"anchor-ambiguous: drifted anchor, the cited edits use {len(found)} anchors"
    # 2. the same lines up to whitespace
    spans = _loose_matches(text, anchor)
    if len(spans) == 1 and text.count(spans[0]) == 1:
        return _moved(edit, field, spans[0]), None
    if len(spans) > 1:
        return None, f"anchor-ambiguous: drifted anchor matches {len(spans)} places"
    return edit, None


def _moved(edit: Edit, field: AnchorField, anchor: str) -> Edit:
    data = edit.model_dump(exclude={"id"})
    data[field] = anchor
    return Edit.model_validate(data)
