"""Readers for the run files the index does not cover yet: analyses, merges, patches, ablations.

Each reader takes a run folder and returns the rows of one file of the run-file contract as
pydantic models that keep only the contract's fields, so the app reads what producers promise
and nothing more. A missing file is an empty list (the stage has not run); a corrupt or torn
line is skipped, as the index does. These loaders stand in for the index tables ``patches``,
``edits``, ``merges`` and ``ablations`` until those are indexed; they keep no state, so they can
be swapped for index queries without touching the pages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.patch import Patch

ANALYSES_FILE = "analyses.jsonl"
MERGES_FILE = "merges.jsonl"
ABLATIONS_FILE = "ablations.jsonl"
PATCHES_DIR = "patches"

M = TypeVar("M", bound=BaseModel)


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Analysis(_Row):
    """One line of ``analyses.jsonl``: an analysed trajectory and the patch it produced."""

    id: str
    trajectory_id: str
    task_id: str
    outcome: str
    analyst: str
    model: str
    status: str = Field(description="kept | dropped")
    reason: str | None = None
    patch_id: str | None = None
    fix_passed: bool | None = None
    turns: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    report: str = ""


class Conflict(_Row):
    """A conflicted file of a group merge and how many hunks conflicted."""

    file: str
    hunks: int


class MergedEdit(_Row):
    """An edit of a consolidated patch with the child edits it cites and its leaf support."""

    id: str
    cited: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    support: int = 1


class DroppedEdit(_Row):
    """A child edit the merge left out, and why."""

    edit_id: str
    reason: str = ""


class Merge(_Row):
    """One line of ``merges.jsonl``: one group merge of the consolidation hierarchy."""

    level: int
    group: str
    children: list[str]
    child_commits: list[str] = Field(default_factory=list)
    commit: str | None = None
    patch_id: str | None = None
    status: str = Field(description="merged | union | passed_up | failed")
    reason: str | None = None
    conflicts: list[Conflict] = Field(default_factory=list)
    edits: list[MergedEdit] = Field(default_factory=list)
    dropped: list[DroppedEdit] = Field(default_factory=list)
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def node_id(self) -> str:
        """The merge's id in the tree: ``L<level>/<group>``."""
        return f"L{self.level}/{self.group}"


class Ablation(_Row):
    """One line of ``ablations.jsonl``: the effect of removing (or keeping only) one edit."""

    edit_id: str
    patch_id: str | None = None
    kind: str = Field(description="ablate | only")
    commit: str | None = None
    split: str = ""
    seed: int = 0
    n: int
    passed: int
    pass_rate: float
    delta: float
    ci_low: float
    ci_high: float
    tasks: list[str] = Field(default_factory=list)


def _read_jsonl(path: Path, model: type[M]) -> list[M]:
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    rows = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rows.append(model.model_validate(json.loads(line)))
        except (ValueError, ValidationError):
            continue  # a torn last line or a corrupt one: skipped, as the index does
    return rows


def read_analyses(run_dir: Path) -> list[Analysis]:
    """The run's ``analyses.jsonl`` rows (empty when the analyse stage has not run)."""
    return _read_jsonl(Path(run_dir) / ANALYSES_FILE, Analysis)


def read_merges(run_dir: Path) -> list[Merge]:
    """The run's ``merges.jsonl`` rows (empty when the consolidate stage has not run)."""
    return _read_jsonl(Path(run_dir) / MERGES_FILE, Merge)


def read_ablations(run_dir: Path) -> list[Ablation]:
    """The run's ``ablations.jsonl`` rows (empty when the attribute stage has not run)."""
    return _read_jsonl(Path(run_dir) / ABLATIONS_FILE, Ablation)


def read_patch(run_dir: Path, patch_id: str) -> Patch | None:
    """``patches/<patch_id>.json`` of the run, or None when it is missing or unreadable."""
    path = Path(run_dir) / PATCHES_DIR / f"{Path(patch_id).name}.json"
    try:
        return Patch.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


def read_patches(run_dir: Path) -> dict[str, Patch]:
    """Every readable patch of the run, by id."""
    folder = Path(run_dir) / PATCHES_DIR
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        patch = read_patch(run_dir, path.stem)
        if patch is not None and patch.id:
            out[patch.id] = patch
    return out


def frame(rows: list[BaseModel], columns: list[str]) -> pd.DataFrame:
    """Rows as a DataFrame with ``columns`` (an empty frame keeps them)."""
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame([r.model_dump() for r in rows])[columns]
