"""Provenance trailers: what a trace2skill commit says about where its text came from.

A commit message is ``subject``, an optional body, then one trailer paragraph::

    Trace2Skill-Run: r1
    Trace2Skill-Kind: patch
    Trace2Skill-Patch: p-3f2a
    Trace2Skill-Trajectory: gsm8k-17
    Trace2Skill-Outcome: fail

Lists (``Sources``) are comma-separated on one line. Trailers are written in a fixed order so
the same provenance always yields the same message, hence the same commit id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PREFIX = "Trace2Skill-"

CommitKind = Literal["base", "patch", "merge", "result", "ablate", "only", "seq", "prune"]


class Trailers(BaseModel):
    """Provenance carried by one commit of a run."""

    schema_version: int = 1
    run: str
    """The run id (refs live under ``refs/heads/t2s/<run>/``)."""
    kind: CommitKind
    """Which branch family the commit belongs to."""
    patch: str | None = None
    """The patch id of a patch commit (or of the edit an ablate/only commit is about)."""
    trajectory: str | None = None
    """The trajectory the patch was analysed from."""
    outcome: Literal["pass", "fail"] | None = None
    """The verifier's verdict on that trajectory."""
    analyst: str | None = None
    """The analyst that wrote the patch (e.g. ``error-agentic``, ``success``)."""
    model: str | None = None
    """The model behind the analyst or merge operator."""
    sources: list[str] = Field(default_factory=list)
    """Leaf patch ids whose edits a merge (or derived commit) consolidates."""
    support: int | None = None
    """How many leaf patches support the text (``len(sources)`` for merges)."""
    level: int | None = None
    """Consolidation level of a merge commit (1 = merges of patch commits)."""
    group: str | None = None
    """Group name of a merge commit within its level."""
    step: int | None = None
    """Position in a sequential chain."""


_KEYS: dict[str, str] = {
    "run": "Run",
    "kind": "Kind",
    "patch": "Patch",
    "trajectory": "Trajectory",
    "outcome": "Outcome",
    "analyst": "Analyst",
    "model": "Model",
    "level": "Level",
    "group": "Group",
    "step": "Step",
    "support": "Support",
    "sources": "Sources",
}
_FIELDS = {value.lower(): key for key, value in _KEYS.items()}


def _one_line(value: str) -> str:
    return " ".join(value.split())


def format_message(subject: str, trailers: Trailers, body: str = "") -> str:
    """Build a commit message: one-line subject, optional body, trailer paragraph."""
    lines = [_one_line(subject) or "trace2skill commit", ""]
    if body.strip():
        lines += [body.strip(), ""]
    for name, key in _KEYS.items():
        value = getattr(trailers, name)
        if value is None or value == []:
            continue
        text = ", ".join(value) if isinstance(value, list) else str(value)
        lines.append(f"{PREFIX}{key}: {_one_line(text)}")
    return "\n".join(lines) + "\n"


def parse_trailers(message: str) -> Trailers | None:
    """Read the trailers back from a commit message; None if it is not a trace2skill commit."""
    values: dict[str, object] = {}
    # only the last paragraph holds trailers, so a body line cannot pose as one
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    for line in (paragraphs[-1] if paragraphs else "").splitlines():
        if not line.startswith(PREFIX) or ": " not in line:
            continue
        key, _, value = line[len(PREFIX) :].partition(": ")
        field = _FIELDS.get(key.lower())
        if field is None:
            continue
        if field == "sources":
            values[field] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            values[field] = value.strip()
    if "run" not in values or "kind" not in values:
        return None
    try:
        return Trailers.model_validate(values)
    except ValueError:
        return None


def subject_of(message: str) -> str:
    """The first line of a commit message."""
    return message.split("\n", 1)[0]
