"""Run folders: the file names of ``runs/<run-id>/``, the manifest, and the stage runner.

Every stage of a run (rollout, import, analyse, consolidate, evaluate, attribute) has the
same shape, and :func:`run_stage` is that shape once:

1. the stage plans its **units** (plain data: an ``id`` that is the resume key, plus what
   the unit needs; see :class:`Unit`), and says which ids are already finished;
2. the runner records ``status="running"`` and the stage's config in ``manifest.json``,
   draws a progress bar, runs the remaining units through an
   :class:`~toolkit.executor.Executor` and hands each result to the stage's ``save`` as soon
   as it is ready (an atomic JSONL append, so a kill loses only the units in flight);
3. it records ``done`` with the stage's counts, or ``failed`` / ``interrupted`` with the
   error, and re-raises.

Resuming is by unit id: a unit whose id is finished is not run again.

All run file names live here (:data:`MANIFEST_FILE`, :data:`TRAJECTORIES_FILE`...), so a
reader and a writer of a run never spell them differently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitError, validation_details
from toolkit.executor import Executor, LocalExecutor
from toolkit.progress import Progress

MANIFEST_SCHEMA_VERSION = 1

# The files of a run folder (DESIGN.md section 4; the record fields are in each producer).
MANIFEST_FILE = "manifest.json"
SPLITS_FILE = "splits.json"
TRAJECTORIES_FILE = "trajectories.jsonl"
CALLS_FILE = "llm_calls.jsonl"
ANALYSES_FILE = "analyses.jsonl"
PATCHES_DIR = "patches"
MERGES_FILE = "merges.jsonl"
ABLATIONS_FILE = "ablations.jsonl"
EVALS_DIR = "evals"
REFS_BUNDLE = "refs.bundle"


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


class StageRecord(BaseModel):
    """The status of one stage of a run (``rollout``, ``analyse``, ``evaluate``...)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["running", "done", "failed", "interrupted"]
    started_at: str = Field(description="ISO 8601 UTC time the stage (last) started.")
    ended_at: str | None = Field(default=None, description="ISO 8601 UTC time it ended.")
    config: dict[str, Any] = Field(default_factory=dict, description="The stage's settings.")
    counts: dict[str, Any] = Field(default_factory=dict, description="Result counts.")
    error: str | None = Field(default=None, description="Why it failed.")
    pid: int | None = Field(default=None, description="The process running it (while running).")
    host: str | None = Field(default=None, description="The machine of that process.")

    def settle(self) -> StageRecord:
        """This record, or, when it says running but its process is gone from this machine (a
        SIGKILL, a closed session, a crash), the same record marked interrupted."""
        if self.status != "running" or self.pid is None or self.host != _HOST:
            return self
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            why = f"its process (pid {self.pid}) ended without recording an end: killed?"
            return self.model_copy(update={"status": "interrupted", "error": self.error or why})
        except OSError:  # alive under another user (EPERM)
            pass
        return self


_HOST = socket.gethostname()


class Manifest(BaseModel):
    """``runs/<run-id>/manifest.json``: what the run is and how far each stage got."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = MANIFEST_SCHEMA_VERSION
    run_id: str = Field(description="The run directory's name.")
    created_at: str = Field(description="ISO 8601 UTC creation time.")
    toolkit_version: str = Field(description="trace2skill version that last wrote it.")
    stages: dict[str, StageRecord] = Field(default_factory=dict)

    def settled(self) -> Manifest:
        """This manifest with each stage :meth:`StageRecord.settle`-d (a stage whose process
        died reads as interrupted)."""
        stages = {name: record.settle() for name, record in self.stages.items()}
        return self.model_copy(update={"stages": stages})


def now_iso() -> str:
    """The current UTC time as ISO 8601 to the second (the manifest's time format)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def toolkit_version() -> str:
    """The installed trace2skill version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trace2skill")
    except PackageNotFoundError:
        return "0+unknown"


class StageTime(BaseModel):
    """One line of a run's time table: a stage, its status and wall seconds."""

    name: str
    status: str
    seconds: float | None = Field(description="None while running or when not recorded.")


def stage_times(stages: Mapping[str, StageRecord]) -> list[StageTime]:
    """A run's stages for a time table, each piece of work once (pure).

    A stage that ran inside another (evolve's rollout and evaluations, an ablation's
    evaluations) is left out, so the seconds add up to the run's wall time; ``evolve`` is
    shown as its own stages, from the figures it keeps (which a later replay of one of its
    evaluations cannot overwrite).
    """
    spans = {name: _span(record) for name, record in stages.items()}
    rows: list[StageTime] = []
    for name, record in stages.items():
        start, end = spans[name]
        inside = start is not None and any(
            other != name and s is not None and s <= start and (end or start) <= (e or s)
            and (s, e or s) != (start, end or start)  # two equal spans: both are kept
            for other, (s, e) in spans.items()
        )  # fmt: skip
        if inside:
            continue
        nested = record.counts.get("stages") if name == "evolve" else None
        if isinstance(nested, dict) and nested:
            rows += [
                StageTime(
                    name=sub,
                    status=str(figures.get("status", "")),
                    seconds=float(figures.get("wall_s") or 0.0) or None,
                )
                for sub, figures in nested.items()
                if isinstance(figures, dict) and figures.get("status") != "pending"
            ]
            continue
        seconds = (end - start).total_seconds() if start and end else None
        rows.append(StageTime(name=name, status=record.status, seconds=seconds))
    return rows


def _span(record: StageRecord) -> tuple[datetime | None, datetime | None]:
    try:
        start = datetime.fromisoformat(record.started_at)
        end = datetime.fromisoformat(record.ended_at) if record.ended_at else None
    except ValueError:
        return None, None
    return start, end


def read_jsonl_dicts(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; a torn or corrupt line is skipped (append-only files)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            rows.append(value)
    return rows


def read_manifest(run_dir: str | Path) -> Manifest | None:
    """The run's manifest, or None when there is none yet. A stage recorded as running whose
    process is gone from this machine reads as interrupted (:meth:`StageRecord.settle`).

    Raises:
        ToolkitError: the file exists but is not a valid manifest.
    """
    path = Path(run_dir) / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes()).settled()
    except FileNotFoundError:
        return None
    except ValidationError as exc:
        # Name the fields ("2 validation errors for Manifest" said nothing a user can fix).
        errors = validation_details(exc)
        shown = "; ".join(errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ToolkitError(f"invalid run manifest {path}: {shown}{more}") from None
    except NotADirectoryError:
        # A folder on the way is a file: name it, not the manifest that cannot be there.
        blocker = next((p for p in reversed(path.parents) if p.is_file()), None)
        raise ToolkitError(
            f"{blocker or path.parent} is a file, not a folder: the run folder "
            f"{Path(run_dir)} cannot be under it"
        ) from None
    except OSError as exc:
        raise ToolkitError(f"cannot read the run manifest {path}: {exc.strerror or exc}") from None


def _is_agent_stage(name: str) -> bool:
    """Stages whose model is the agent (rollouts and evaluations), not the author."""
    return name == "rollout" or name.startswith("eval")


def recorded_api_base(
    manifest: Manifest | None, model: str, role: Literal["agent", "author"] = "agent"
) -> str | None:
    """The OpenAI-compatible server (``api_base``) a stage of the run recorded for ``model``
    in ``role``: later stages that call the same model call it there (analyse once sent the
    agent's model to the provider's public endpoint, with the key meant for the user's own
    server).

    The role's own stages answer first: one model may be the agent on the provider's
    endpoint and the author on a server of its own (``evolve --author-api-base`` without
    ``--author-model``), so the agent's evaluations must not go to the author's server.
    """
    from toolkit.llm.config import PROVIDER_ENDPOINT

    if manifest is None:
        return None
    for name, record in manifest.stages.items():
        config = record.config or {}
        if role == "agent" and _is_agent_stage(name) and model == config.get("model"):
            # The agent's own record decides, the provider's endpoint (None) included.
            return str(config["api_base"]) if config.get("api_base") else None
        author = config.get("author_api_base")
        authors = config.get("author_model") or config.get("model")
        if role == "author" and author is not None and model == authors:
            # evolve --author-api-base: the author model's own server.
            return None if author == PROVIDER_ENDPOINT else str(author)
    for record in manifest.stages.values():
        config = record.config or {}
        author = config.get("author_api_base")
        if author is not None and model == config.get("author_model") != config.get("model"):
            return None if author == PROVIDER_ENDPOINT else str(author)
        if config.get("api_base") and model in (config.get("model"), config.get("author_model")):
            return str(config["api_base"])
    return None


def with_recorded_server(
    llm: Any,
    manifest: Manifest | None,
    model: str,
    role: Literal["agent", "author"] = "agent",
) -> Any:
    """``llm`` (an :class:`~toolkit.llm.config.LLMConfig`) with the server the run recorded
    for ``model`` in ``role`` when it names none itself (see :func:`recorded_api_base`).

    Raises:
        LLMError: the recorded URL had a password, which run files do not keep.
    """
    from toolkit.llm.config import reusable_api_base

    if llm.api_base is not None:
        return llm
    api_base = reusable_api_base(recorded_api_base(manifest, model, role))
    return llm.model_copy(update={"api_base": api_base}) if api_base else llm


def update_stage(run_dir: str | Path, stage: str, **fields: Any) -> Manifest:
    """Create or update one stage's record in ``manifest.json`` (locked, atomic replace).

    ``fields`` are :class:`StageRecord` fields; given ones replace the stored values, so a
    stage can first write ``status="running"`` with its config, then ``status="done"`` with
    its counts. Other stages' records are kept.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(run_dir / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        manifest = read_manifest(run_dir) or Manifest(
            run_id=run_dir.resolve().name, created_at=now_iso(), toolkit_version=toolkit_version()
        )
        old = manifest.stages.get(stage)
        if "status" in fields:  # who runs it, so readers can tell it died
            running = fields["status"] == "running"
            pid, host = (os.getpid(), _HOST) if running else (None, None)
            fields = {"pid": pid, "host": host, **fields}
        merged = {**(old.model_dump() if old else {"started_at": now_iso()}), **fields}
        manifest.stages[stage] = StageRecord.model_validate(merged)
        manifest.toolkit_version = toolkit_version()
        data = manifest.model_dump(mode="json")
        for record in data["stages"].values():
            for key in ("pid", "host"):  # only while running: finished records stay as they were
                if record.get(key) is None:
                    record.pop(key, None)
        text = json.dumps(data, indent=2) + "\n"
        write_atomic(run_dir / MANIFEST_FILE, text, prefix=".manifest-", suffix="")
        return manifest
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)


def run_epoch(run_dir: str | Path) -> int:
    """The run's creation time as Unix seconds: the date of every commit the run writes.

    Commit dates come from the run, not the clock, so re-running a run writes the same commit
    ids (DESIGN.md section 2). A run without a manifest yet gets the current time.
    """
    manifest = read_manifest(run_dir)
    if manifest is None:
        return int(datetime.now(UTC).timestamp())
    return int(datetime.fromisoformat(manifest.created_at).timestamp())


# ---------------------------------------------------------------------------------------------
# Stage runner
# ---------------------------------------------------------------------------------------------


class Unit(Protocol):
    """A unit of a stage: plain data whose ``id`` is the resume key.

    A unit carries ids and settings, never live objects (pools, gateways, open files), so an
    executor could ship it to another process that builds its own.
    """

    @property
    def id(self) -> str: ...  # noqa: D102


U = TypeVar("U", bound=Unit)
R = TypeVar("R")


class StageSpec(BaseModel, Generic[U, R]):
    """How :func:`run_stage` runs one stage; the stage supplies the work and the I/O."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_dir: Path = Field(description="The run folder (its manifest.json records the stage).")
    name: str = Field(description="Stage name in manifest.json (rollout, analyse...).")
    label: str = Field(description="Progress bar label.")
    unit: str = Field("task", description="What one unit is, for the bar's seconds per unit.")
    config: dict[str, Any] = Field(description="The stage's settings, recorded in the manifest.")
    units: Sequence[Any] = Field(description="Every unit of the stage, finished ones included.")
    finished: Collection[str] = Field(description="Ids of the units already done (resume).")
    work: Callable[[Any], Awaitable[Any]] = Field(description="Runs one unit.")
    save: Callable[[Any], None] = Field(description="Persists one result (atomic append).")
    passed: Callable[[Any], bool] = Field(
        default=lambda _result: True, description="Whether a result counts as a pass (bar)."
    )
    already_passed: int = Field(0, description="Passes among the finished units (bar).")
    resources: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = Field(
        None,
        description="Entered around the work only when units remain (a sandbox pool...), so a "
        "resumed stage with nothing left starts nothing; its failures are the stage's.",
    )
    executor: Executor | None = None
    concurrency: int = Field(1, ge=1)
    progress: bool = True


async def run_stage(
    spec: StageSpec[Any, R], counts: Callable[[list[R]], dict[str, Any]]
) -> list[R]:
    """Run the unfinished units of a stage; see the module docstring.

    Args:
        spec: the stage (run folder, units, finished ids, work, save...).
        counts: the stage's result counts, given this call's new results (in unit order);
            recorded with ``status="done"``.

    Returns:
        The new results, in unit order.

    Raises:
        Whatever a unit or ``save`` raised (after recording ``failed`` or ``interrupted``).
    """
    run_dir = spec.run_dir
    todo = [unit for unit in spec.units if unit.id not in spec.finished]
    total, resumed = len(spec.units), len(spec.units) - len(todo)
    manifest = read_manifest(run_dir)
    old = manifest.stages.get(spec.name) if manifest else None
    # Nothing left of a finished stage (a replay, an ablation's subsample of a finished
    # evaluation): its record keeps the times and counts of the work that was done.
    keep = not todo and old is not None and old.status == "done"
    if not keep:
        update_stage(
            run_dir, spec.name, status="running", started_at=now_iso(), ended_at=None,
            error=None, config=spec.config,
        )  # fmt: skip
    bar = (
        Progress(spec.label, total, done=resumed, passed=spec.already_passed, unit=spec.unit)
        if spec.progress
        else None
    )
    new: list[R] = []

    def on_result(_index: int, result: R) -> None:
        spec.save(result)
        new.append(result)
        if bar is not None:
            bar.update(spec.passed(result))

    try:
        if todo:
            if bar is not None:
                bar.draw()
            executor = spec.executor or LocalExecutor()
            async with contextlib.AsyncExitStack() as stack:
                if spec.resources is not None:
                    await stack.enter_async_context(spec.resources())
                results = await executor.map(
                    spec.work, todo, concurrency=spec.concurrency, on_result=on_result
                )
        else:
            results = []
    except BaseException as exc:
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        with contextlib.suppress(Exception):
            update_stage(
                run_dir,
                spec.name,
                status=status,
                ended_at=now_iso(),
                error=str(exc) or type(exc).__name__,
                counts={"units": total, "finished": resumed + len(new)},
            )
        raise
    finally:
        if bar is not None:
            bar.close()
    figures = counts(results)  # called either way: stages read their summary from it
    if not keep:
        update_stage(run_dir, spec.name, status="done", ended_at=now_iso(), counts=figures)
    return results


__all__ = [
    "ABLATIONS_FILE",
    "ANALYSES_FILE",
    "CALLS_FILE",
    "EVALS_DIR",
    "MANIFEST_FILE",
    "MERGES_FILE",
    "PATCHES_DIR",
    "REFS_BUNDLE",
    "SPLITS_FILE",
    "TRAJECTORIES_FILE",
    "Manifest",
    "StageRecord",
    "StageTime",
    "StageSpec",
    "Unit",
    "now_iso",
    "read_jsonl_dicts",
    "read_manifest",
    "stage_times",
    "run_epoch",
    "run_stage",
    "toolkit_version",
    "update_stage",
]
