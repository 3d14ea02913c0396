"""Readers of one run's evolve-stage files: analyses, merges, patches, ablations.

Each reader takes a run folder and returns the rows of one file of the run-file contract as
the contract's models (:mod:`toolkit.runfiles`, the ones the index reads with), so the app
reads what producers promise and nothing more. A missing file is an empty list (the stage has
not run); a corrupt or torn line is skipped, as the index does. The pages read the files
rather than the index tables so that a run's newest files show without re-indexing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from toolkit.patch import Patch
from toolkit.runfiles import AblationLine as Ablation
from toolkit.runfiles import AnalysisLine as Analysis
from toolkit.runfiles import MergeLine as Merge
from toolkit.runs import ABLATIONS_FILE, ANALYSES_FILE, MERGES_FILE, PATCHES_DIR

M = TypeVar("M", bound=BaseModel)


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
