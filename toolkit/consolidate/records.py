"""The consolidation's run files: ``merges.jsonl`` lines and ``patches/<id>.json``.

One :class:`MergeRecord` per group of a level (or per step of a sequential consolidation),
appended when the level is committed (after its merge commits exist), so a line always names
refs that are there. Consolidated patches are saved beside the analysts' leaf patches under
``patches/``. Per-edit provenance (which child edits an edit cites, which leaf patches support
it) lives in the record's ``edits``, since a :class:`~toolkit.patch.Edit` has no field for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitError
from toolkit.patch import Patch
from toolkit.trajectory import append_jsonl, read_jsonl

MERGES_FILE = "merges.jsonl"
PATCHES_DIR = "patches"
MERGE_SCHEMA_VERSION = 2
"""2: ``tokens_in``/``tokens_out`` are null when a call's provider did not report them."""

MergeStatus = Literal["merged", "union", "passed_up", "failed"]


class ConflictCount(BaseModel):
    """How many conflict hunks git found in one file between the children of a group."""

    file: str
    hunks: int


class EditSources(BaseModel):
    """Where one edit of a consolidated patch came from."""

    id: str
    """The edit's id (content hash) in the consolidated patch."""
    cited: list[str] = Field(default_factory=list)
    """Child edit ids the edit was made from."""
    sources: list[str] = Field(default_factory=list)
    """Leaf patch ids behind those child edits (sorted, unique)."""
    support: int = 0
    """``len(sources)``: how many analysed trajectories back the edit."""


class DroppedEdit(BaseModel):
    """An edit that did not make it into the consolidated patch, and why."""

    edit_id: str
    reason: str


class Reanchor(BaseModel):
    """An anchor the merge operator got slightly wrong, replaced by the one unique match."""

    edit_id: str
    """The edit's id after re-anchoring."""
    field: Literal["target_text", "old_text"]
    old: str
    new: str


class MergeRecord(BaseModel):
    """One line of ``merges.jsonl``: a group of one level and what became of it."""

    schema_version: int = MERGE_SCHEMA_VERSION
    level: int
    group: str
    children: list[str]
    """Patch ids of the children (leaf patches or consolidated patches)."""
    child_commits: list[str]
    commit: str | None = None
    """The merge commit (``t2s/<run>/L<level>/<group>``); None when nothing was written."""
    patch_id: str | None = None
    """The consolidated patch, saved as ``patches/<patch_id>.json``."""
    status: MergeStatus
    reason: str | None = None
    forced: bool = False
    """The final forced merge of everything left."""
    conflicts: list[ConflictCount] = Field(default_factory=list)
    edits: list[EditSources] = Field(default_factory=list)
    dropped: list[DroppedEdit] = Field(default_factory=list)
    reanchored: list[Reanchor] = Field(default_factory=list)
    attempts: int = 0
    """Model calls made for the group (2 when the size-budget retry ran)."""
    cached: int = 0
    """Of those, calls the response cache answered (no model time; records 0 tokens)."""
    model: str | None = None
    tokens_in: int | None = 0
    """Prompt tokens of the group's model calls (0: none made); None when a call's were not
    reported (:mod:`toolkit.tokens`)."""
    tokens_out: int | None = 0
    """Completion tokens of the group's model calls; None when a call's were not reported."""
    started_at: float = 0.0
    ended_at: float = 0.0
    step: int | None = None
    """Sequential consolidation: the step this merge made (its batch's patches merged into the
    skill of the step before; ``commit`` is ``t2s/<run>/seq/<step>``); None: a merge of the
    parallel tree. A step that merged nothing (no patch kept, or the merge failed) has a
    record too, with status ``failed`` and no commit."""


def read_merges(run_dir: Path) -> list[MergeRecord]:
    """The records of ``run_dir/merges.jsonl`` (a torn last line is ignored)."""
    return read_jsonl(Path(run_dir) / MERGES_FILE, MergeRecord).records


def append_merges(run_dir: Path, records: list[MergeRecord]) -> None:
    """Append records to ``merges.jsonl`` in one atomic write."""
    append_jsonl(Path(run_dir) / MERGES_FILE, records)


def patch_path(run_dir: Path, patch_id: str) -> Path:
    """``run_dir/patches/<patch_id>.json``."""
    return Path(run_dir) / PATCHES_DIR / f"{patch_id}.json"


def save_patch(run_dir: Path, patch: Patch) -> Path:
    """Write a patch as ``patches/<id>.json`` (atomic replace)."""
    assert patch.id is not None
    path = patch_path(run_dir, patch.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, patch.model_dump_json(indent=2) + "\n")
    return path


def read_patch(run_dir: Path, patch_id: str) -> Patch:
    """Load ``patches/<patch_id>.json`` (ToolkitError naming the file when it is missing or bad)."""
    path = patch_path(run_dir, patch_id)
    try:
        return Patch.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ToolkitError(
            f"{path} is missing: the run has a ref for patch {patch_id} but not its file"
        ) from None
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise ToolkitError(f"{path} is not a valid patch: {first}") from None
