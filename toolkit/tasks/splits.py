"""Explicit task splits, saved as ``splits.json`` so a run evaluates exactly the same tasks.

Suites whose data has no train/test split (GSM8K's 300 test problems, the SpreadsheetBench
subset, user JSONL files without a ``split`` field) assign each task by a hash of its id:
stable across machines and unaffected by adding or removing other tasks.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitNotice
from toolkit.tasks.base import Suite, Task, TaskError
from toolkit.tasks.datadir import VENDORED_DATA_DIR

SPLITS_SCHEMA_VERSION = 1


def hash_split(task_id: str, train_fraction: float = 0.5) -> str:
    """``"train"`` or ``"test"`` for ``task_id``, from the first 8 bytes of its sha256."""
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if share < train_fraction else "test"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SplitsFile(BaseModel):
    """The task ids of each split of one suite (``runs/<run-id>/splits.json``)."""

    schema_version: int = SPLITS_SCHEMA_VERSION
    suite: str = Field(description="Suite name, e.g. 'wikitq'.")
    seed: int = Field(description="Seed of the sub-sampling (``limit``).")
    limits: dict[str, int | None] = Field(description="Requested size per split (None = all).")
    splits: dict[str, list[str]] = Field(description="Task ids per split, in load order.")
    source_hashes: dict[str, str] = Field(
        description="sha256 of each data file, keyed by its name relative to the data root."
    )

    @model_validator(mode="after")
    def _disjoint(self) -> SplitsFile:
        owner: dict[str, str] = {}
        for name, ids in self.splits.items():
            if len(set(ids)) != len(ids):
                raise ValueError(f"split {name!r} lists a task id twice")
            for task_id in ids:
                if task_id in owner:
                    raise ValueError(
                        f"task {task_id!r} is in both split {owner[task_id]!r} and {name!r}"
                    )
                owner[task_id] = name
        return self


def source_hashes(suite: Suite, data_root: Path | None = None) -> dict[str, str]:
    """sha256 of each of the suite's data files, keyed by path relative to ``data_root``."""
    hashes = {}
    for path in suite.source_files():
        key = path.name
        if data_root is not None:
            try:
                key = path.resolve().relative_to(data_root.resolve()).as_posix()
            except ValueError:
                key = path.as_posix()
        hashes[key] = file_sha256(path)
    return hashes


def make_splits(
    suite: Suite,
    limits: dict[str, int | None],
    *,
    seed: int = 0,
    data_root: Path | None = None,
) -> SplitsFile:
    """Load each named split (seeded subset of ``limits[split]`` tasks) and record the ids.

    Raises:
        TaskError: an unknown split, or splits that overlap (e.g. ``all`` with ``train``).
    """
    ids = {name: suite.load(name, limit=limit, seed=seed).ids for name, limit in limits.items()}
    for name, limit in limits.items():
        if limit is not None and len(ids[name]) < limit:
            warnings.warn(short_split_notice(suite, name, limit, len(ids[name])), ToolkitNotice,
                          stacklevel=2)  # fmt: skip
    try:
        return SplitsFile(
            suite=suite.name,
            seed=seed,
            limits=dict(limits),
            splits=ids,
            source_hashes=source_hashes(suite, data_root),
        )
    except ValidationError as exc:
        raise TaskError(f"splits are not disjoint: {exc.errors()[0]['msg']}") from None


def short_split_notice(suite: Suite, split: str, limit: int, available: int) -> str:
    """The note for a ``limit`` larger than the split: the run uses the ``available`` tasks."""
    data = getattr(suite, "data_dir", None)
    where = ""
    if isinstance(data, Path):
        bundled = data.resolve() == VENDORED_DATA_DIR.resolve()
        where = f" in {data}" + (
            " (the bundled slice; --data or $TRACE2SKILL_DATA_DIR for the full benchmark)"
            if bundled
            else ""
        )
    return (
        f"{suite.name} split {split!r} has {available} tasks{where}, fewer than the "
        f"{limit} asked for; using all {available}"
    )


def save_splits(splits: SplitsFile, path: Path) -> None:
    """Write ``splits`` to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(splits.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    write_atomic(path, text, prefix=".splits-", suffix="")


def load_splits(path: Path) -> SplitsFile:
    """Read a ``splits.json``.

    Raises:
        TaskError: missing file, bad JSON or a record that fails validation.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"splits file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskError(f"cannot read splits file {path}: {exc}") from None
    try:
        return SplitsFile.model_validate(data)
    except ValidationError as exc:
        raise TaskError(f"invalid splits file {path}: {exc.errors()[0]['msg']}") from None


def tasks_for_split(
    suite: Suite,
    splits: SplitsFile,
    split: str,
    *,
    data_root: Path | None = None,
    splits_path: Path | None = None,
) -> list[Task]:
    """The tasks of ``split`` as recorded in ``splits``, after checking the data is unchanged.

    ``splits_path`` (where ``splits`` was read) is named in the error for changed data.

    Raises:
        TaskError: wrong suite, unknown split, changed data files or missing task ids.
    """
    if splits.suite != suite.name:
        raise TaskError(f"splits file is for suite {splits.suite!r}, not {suite.name!r}")
    if split not in splits.splits:
        raise TaskError(
            f"splits file has no split {split!r}; it has: " + ", ".join(sorted(splits.splits))
        )
    current = source_hashes(suite, data_root)
    changed = sorted(k for k, v in splits.source_hashes.items() if current.get(k) != v)
    if changed:
        where = f" in {splits_path}" if splits_path is not None else ""
        new = sorted(set(current) - set(splits.source_hashes))
        now = f" (the data now: {', '.join(new)})" if new else ""
        raise TaskError(
            f"data files changed since the splits{where} were made: {', '.join(changed)}{now}; "
            "a run folder keeps the tasks it was made with: put the data back as it was, "
            "or choose another run folder for this data (--run-dir; evolve: --run-id)"
        )
    return suite.load_ids(splits.splits[split])
