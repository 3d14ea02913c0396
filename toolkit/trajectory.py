"""Trajectory records: what one agent did on one task with one skill, step by step.

A :class:`Trajectory` is one line of ``runs/<run-id>/trajectories.jsonl``. It records the task,
the skill version (:func:`skill_commit`: a git tree id of the skill folder), the model, the seed
and the skill delivery; every :class:`Step` (thought, tool call, observation, tokens, latency);
the final answer and the suite's :class:`Verdict`; and the :class:`SectionUse` list (which skill
sections or files the agent read, cited or echoed, per step), which attribution and the
analysts read.

JSONL I/O is crash-safe: :func:`append_jsonl` writes each record as one line with one
``os.write`` on an ``O_APPEND`` descriptor under an exclusive ``flock``, so concurrent writers
(tasks, threads, processes) never interleave; :func:`read_jsonl` tolerates a torn last line
(a process killed mid-write): it is reported in :attr:`JsonlRead.torn` and ignored, and the
next append cuts it off before writing.
"""

from __future__ import annotations

import codecs
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.atomic import write_atomic
from toolkit.code_protocol import parse_reply
from toolkit.errors import ToolkitError, validation_details
from toolkit.known import predates_unknown, zero_absent
from toolkit.runs import TRAJECTORIES_FILE, now_iso, read_manifest, update_stage
from toolkit.skill import SKILL_MD, Skill

TRAJECTORY_SCHEMA_VERSION = 2
"""2: token counts (of the trajectory and of each step) are null when the provider did not
report them, and the cost when a call could not be priced (1 held 0). A version 1 line reads
as before: an absent count or cost is 0."""
UNKNOWN_USAGE_SINCE = 2
"""The first trajectory format whose token counts and cost may be unknown (null)."""
_TOKEN_FIELDS = ("tokens_in", "tokens_out")

Delivery = Literal["system", "progressive", "none"]
"""How the skill reaches the agent: ``system`` (whole SKILL.md in the system prompt, as in the
paper), ``progressive`` (headings and section ids in the prompt, bodies read on demand with
``read_skill_file``), ``none`` (no-skill baseline). Imported trajectories use ``imported``."""

IMPORTED_MODEL = "imported"
"""The model of an imported trajectory whose harness did not name one (no model to call)."""

StopReason = Literal[
    "submitted", "max_turns", "stuck", "token_budget", "context_window", "error", "unknown"
]
"""Why a trajectory ended: the agent submitted, it ran out of turns, it was stuck (the code
protocol ends a task when the same failing code comes a third time), it ran out of tokens, the
conversation outgrew the model's context window, or a model call failed (the run goes on
with the next task; a resume runs an ``error`` task again, not a ``context_window`` one, which
would end the same way)."""

DELIVERIES: tuple[str, ...] = ("system", "progressive", "none")
NO_SKILL_COMMIT = "none"
"""``skill_commit`` of a no-skill trajectory."""

M = TypeVar("M", bound=BaseModel)


class TrajectoryError(ToolkitError):
    """A trajectories file is unreadable or holds a record that is not a trajectory."""


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


class Action(BaseModel):
    """One tool call."""

    tool: str = Field(description="Tool name: python, read_skill_file or submit (or imported).")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Tool arguments: code (python), path/section (read_skill_file), answer.",
    )


class Step(BaseModel):
    """One ReAct step: one model call (thought + one tool call) and the tool's observation."""

    index: int = Field(ge=0, description="0-based position in the trajectory.")
    thought: str = Field(default="", description="The model's reasoning for this step.")
    action: Action = Field(description="The tool call the model chose.")
    observation: str = Field(
        default="", description="What the tool returned, as the model saw it (truncated)."
    )
    observation_truncated: bool = Field(
        default=False, description="The observation was cut to the agent's limit."
    )
    cited_sections: list[str] = Field(
        default_factory=list, description="Skill section ids the model said it followed."
    )
    read_sections: list[str] = Field(
        default_factory=list,
        description="Section refs read with read_skill_file (``file#section-id``).",
    )
    read_files: list[str] = Field(
        default_factory=list, description="Whole skill files read with read_skill_file."
    )
    tokens_in: int | None = Field(
        default=None,
        description="Prompt tokens of the step's model call (0: from the response cache); "
        "None when the provider did not report them.",
    )
    tokens_out: int | None = Field(
        default=None,
        description="Completion tokens of the step's model call; None when not reported.",
    )
    latency_s: float = Field(default=0.0, description="Seconds the model call took.")
    tool_s: float = Field(default=0.0, description="Seconds the tool took.")
    cache_hit: bool = Field(default=False, description="The model reply came from the cache.")
    call_id: str | None = Field(default=None, description="Id of the call in llm_calls.jsonl.")
    error: str | None = Field(
        default=None,
        description="Why the tool call failed (bad arguments, snippet exception, time limit); "
        "the loop went on with this as the observation.",
    )


UseKind = Literal["read", "cited", "echoed"]
"""How a step used a skill section: see :attr:`SectionUse.kind`."""


class SectionUse(BaseModel):
    """One use of a skill section or file by the agent."""

    model_config = ConfigDict(frozen=True)

    step: int = Field(ge=0, description="Index of the step that used it.")
    kind: UseKind = Field(
        description="read (read_skill_file), cited (named by id) or echoed (its distinctive "
        "lines reproduced in a reply: toolkit.skill_echo)."
    )
    file: str = Field(description="Skill file: 'SKILL.md' or 'references/<name>.md'.")
    section_id: str | None = Field(
        default=None, description="Section id within the file; None when the whole file."
    )

    @property
    def ref(self) -> str:
        """``file#section-id`` (or just ``file``): one string naming what was used."""
        return self.file if self.section_id is None else f"{self.file}#{self.section_id}"


class Verdict(BaseModel):
    """The suite's judgement of the final answer."""

    passed: bool = Field(description="True when the answer is correct under the suite's rule.")
    score: float = Field(default=0.0, ge=0.0, le=1.0, description="Score in [0, 1].")
    details: str = Field(default="", description="One line explaining the verdict.")
    predicted: list[str] = Field(default_factory=list, description="Normalised prediction.")
    gold: list[str] = Field(default_factory=list, description="Normalised gold answer.")


class PromptMessage(BaseModel):
    """A message the agent read before its first step (see :attr:`Trajectory.prompt`)."""

    role: Literal["system", "user"] = Field(description="system or user.")
    content: str = Field(description="The message's text.")


class Trajectory(BaseModel):
    """One agent run on one task with one skill version: a line of trajectories.jsonl."""

    schema_version: int = Field(default=TRAJECTORY_SCHEMA_VERSION, description="Format version.")
    id: str = Field(
        description="Content hash of (suite, task, skill commit, model, seed, delivery)."
    )
    task_id: str = Field(description="Task id within its suite.")
    suite: str = Field(description="Suite name, e.g. 'gsm8k' (empty for imports without one).")
    split: str = Field(default="", description="Split the task was drawn from.")
    question: str = Field(default="", description="The task's question or instruction.")
    skill_name: str | None = Field(default=None, description="Skill folder name; None: no skill.")
    skill_commit: str = Field(
        default=NO_SKILL_COMMIT,
        description="Git tree id of the skill folder (see skill_commit()); 'none' without skill; "
        "'memory-<hash>' for a skill shown with a memory bank (toolkit.memory; metadata.memory "
        "names the skill's tree id and the items shown).",
    )
    model: str = Field(description="litellm model string of the agent.")
    seed: int = Field(default=0, description="Run seed.")
    sample_seed: int = Field(default=0, description="Sampling seed of this task (from seed+task).")
    temperature: float | None = Field(default=None, description="Sampling temperature.")
    delivery: str = Field(description="system | progressive | none | imported.")
    protocol: str = Field(
        "json", description="How the agent talked to the model: json | code | imported."
    )
    prompt: list[PromptMessage] = Field(
        default_factory=list,
        description="An imported chat's system prompt and the user messages before the first "
        "assistant reply (they often carry the skill). Empty for our own rollouts: their "
        "prompt is rebuilt from the skill and the agent config.",
    )
    steps: list[Step] = Field(default_factory=list, description="The steps, in order.")
    final_answer: str | None = Field(default=None, description="The submitted answer, if any.")
    verdict: Verdict = Field(description="The suite's verdict on the final answer.")
    section_uses: list[SectionUse] = Field(
        default_factory=list, description="Every read and citation of a skill section or file."
    )
    tokens_in: int | None = Field(
        default=None,
        description="Prompt tokens over all steps; None when any step's were not reported "
        "(a total with a missing part is unknown: toolkit.tokens).",
    )
    tokens_out: int | None = Field(
        default=None, description="Completion tokens over all steps; None when not reported."
    )
    cost_usd: float | None = Field(
        default=None,
        description="Model cost in USD over all steps; None when a call could not be priced "
        "(a model litellm has no price for, no usage reported: toolkit.cost).",
    )
    latency_s: float = Field(default=0.0, description="Wall seconds from start to verdict.")
    started_at: float = Field(default=0.0, description="Start, Unix epoch seconds.")
    ended_at: float = Field(default=0.0, description="End, Unix epoch seconds.")
    stop_reason: StopReason = Field(
        description="submitted | max_turns | stuck | token_budget | context_window | error | "
        "unknown (an imported trajectory with no answer: its harness did not say why)."
    )
    error: str | None = Field(
        default=None, description="The model error when stop_reason is error or context_window."
    )
    source: Literal["rollout", "import"] = Field(
        default="rollout", description="Produced by our agent, or imported from another harness."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Extra fields (agent config, imported extras)."
    )

    @model_validator(mode="before")
    @classmethod
    def _version_1_counts(cls, data: Any) -> Any:
        # Version 1 had no unknown count or cost: one it left out was 0 (its default).
        if not predates_unknown(data, UNKNOWN_USAGE_SINCE):
            return data
        data = zero_absent(data, (*_TOKEN_FIELDS, "cost_usd"))
        steps = data.get("steps")
        if isinstance(steps, list):
            steps = [zero_absent(s, _TOKEN_FIELDS) if isinstance(s, dict) else s for s in steps]
            data = {**data, "steps": steps}
        return data

    @property
    def passed(self) -> bool:
        """Shortcut for ``verdict.passed``."""
        return self.verdict.passed

    def sections_used(self, kind: UseKind | None = None) -> set[str]:
        """Refs (``file#section``) of the sections used, of one kind or any."""
        return {u.ref for u in self.section_uses if kind is None or u.kind == kind}


# ---------------------------------------------------------------------------------------------
# Ids and seeds (pure)
# ---------------------------------------------------------------------------------------------


def _digest(parts: Iterable[object]) -> str:
    payload = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def trajectory_id(
    suite: str,
    task_id: str,
    skill_commit: str,
    model: str,
    seed: int,
    delivery: str,
    agent: str = "",
) -> str:
    """The id of a trajectory: 16 hex chars of a hash of what determines it.

    Re-running the same task with the same skill version, model, seed, delivery and agent
    (``agent``: the agent's fingerprint, see ``toolkit.agent.agent_fingerprint``; empty for
    imported trajectories) gives the same id, which is how ``resume`` and ``eval`` recognise
    finished work, and why a changed agent (budgets, sampling, prompts) does not reuse it.
    """
    parts: list[Any] = [suite, task_id, skill_commit, model, seed, delivery]
    if agent:
        parts.append(agent)
    return _digest(parts)[:16]


def task_seed(seed: int, task_id: str) -> int:
    """The sampling seed of one task: a hash of the run seed and the task id (31 bits).

    Tasks get different seeds in one run, and the same seeds in every run with that seed.
    """
    return int(_digest(["task-seed", seed, task_id])[:8], 16) & 0x7FFFFFFF


def _git_object(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).digest()


def _tree_hash(entries: Mapping[str, Any]) -> bytes:
    """Git tree hash of a nested {name: bytes | (mode, bytes) | dict} mapping."""
    rows = []
    for name, value in entries.items():
        if isinstance(value, dict):
            rows.append((name + "/", b"40000 " + name.encode() + b"\0" + _tree_hash(value)))
        else:
            mode, data = value
            rows.append((name, mode + b" " + name.encode() + b"\0" + _git_object("blob", data)))
    # git orders tree entries by name, a directory sorting as if its name ended with "/".
    rows.sort(key=lambda row: row[0].encode())
    return _git_object("tree", b"".join(row for _, row in rows))


def skill_commit(skill: Skill | None) -> str:
    """The version id of a skill: the git tree id its folder would have (``none`` if None).

    For a folder committed unchanged in git this equals ``git rev-parse HEAD:<folder>``; for
    an on-disk or in-memory skill it is a pure content hash computed the same way, so the same
    content always has the same id wherever it lives. Executable bits come from
    :attr:`Skill.executables`, or from disk when the skill was loaded from a folder.
    """
    if skill is None:
        return NO_SKILL_COMMIT
    tree: dict[str, Any] = {}
    for path, content in skill.files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        mode = b"100755" if path in skill.executables else b"100644"
        if skill.root is not None:
            try:
                if os.stat(Path(skill.root, path)).st_mode & 0o111:
                    mode = b"100755"
            except OSError:
                pass
        node = tree
        *dirs, name = path.split("/")
        for part in dirs:
            node = node.setdefault(part, {})
        node[name] = (mode, data)
    return _tree_hash(tree).hex()


# ---------------------------------------------------------------------------------------------
# JSONL I/O
# ---------------------------------------------------------------------------------------------


class JsonlRead(BaseModel, Generic[M]):
    """Records read from a JSONL file, and the torn last line that was skipped (if any)."""

    records: list[M]
    torn: str | None = None
    """Description of an incomplete last line (a writer killed mid-line), which was ignored."""


def _cut_torn_tail(fd: int) -> None:
    """Make the file end at a line boundary before appending.

    A last line without a newline is either a torn write (a writer killed mid-line: it is
    cut off) or a complete JSON value whose newline is missing (a hand edit: the newline is
    added), the same rule :func:`read_jsonl` applies when reading.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    # Walk back to the previous newline in chunks; everything after it is the last line.
    end, start_of_tail = size, 0
    while end > 0:
        start = max(0, end - 65536)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut != -1:
            start_of_tail = start + cut + 1
            break
        end = start
    tail = os.pread(fd, size - start_of_tail, start_of_tail)
    try:
        json.loads(tail)
    except ValueError:
        os.ftruncate(fd, start_of_tail)
    else:
        os.pwrite(fd, b"\n", size)


def append_jsonl(path: Path, records: BaseModel | Iterable[BaseModel]) -> None:
    """Append records to ``path``, one JSON line each, atomically.

    All lines go out in one ``os.write`` on an ``O_APPEND`` descriptor under an exclusive
    ``flock``: concurrent writers never interleave, and a kill leaves at most one torn last
    line, which the next append cuts off first (and :func:`read_jsonl` ignores).
    """
    items = [records] if isinstance(records, BaseModel) else list(records)
    if not items:
        return
    data = "".join(r.model_dump_json() + "\n" for r in items).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Read-write so the torn-tail check can pread; O_APPEND keeps every write at the end.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _cut_torn_tail(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def repair_jsonl(path: Path) -> bool:
    """Cut a torn last line off ``path`` (under the writers' lock); True if one was cut."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            before = os.fstat(fd).st_size
            _cut_torn_tail(fd)
            return os.fstat(fd).st_size != before
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_jsonl(path: Path, model: type[M]) -> JsonlRead[M]:
    """Read a JSONL file of ``model`` records.

    A last line without a newline that is not valid JSON is a torn write: it is skipped and
    described in :attr:`JsonlRead.torn`. A missing file reads as empty.

    Raises:
        TrajectoryError: a complete line is not valid JSON or not a valid record (the message
            gives the file, the line number and what is wrong).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return JsonlRead[model](records=[])  # type: ignore[valid-type]
    except OSError as exc:
        raise TrajectoryError(f"cannot read {path}: {exc}") from None
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records: list[M] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(model.model_validate_json(line))
        except ValidationError as exc:
            if number == 1 and _one_json_document(raw):
                # manifest.json, summary.json...: "line 1: not valid JSON" of a valid file
                # would send the user looking for damage that is not there.
                raise TrajectoryError(
                    f"{path} is one JSON document, not a JSONL file of records (one JSON "
                    "object per line): give the run folder or its .jsonl file"
                ) from None
            raise TrajectoryError(f"{path}:{number}: {_validation_line(exc)}") from None
    torn = None
    if tail.strip():
        try:
            json.loads(tail)
        except ValueError:
            torn = (
                f"{path}:{len(lines) + 1}: ignored an incomplete last line ({len(tail)} bytes, "
                "no newline; a writer was probably killed mid-write)"
            )
        else:
            try:
                records.append(model.model_validate_json(tail))
            except ValidationError as exc:
                raise TrajectoryError(f"{path}:{len(lines) + 1}: {_validation_line(exc)}") from None
    return JsonlRead[model](records=records, torn=torn)  # type: ignore[valid-type]


def _one_json_document(raw: bytes) -> bool:
    """Whether ``raw`` is a single JSON value spread over several lines."""
    try:
        json.loads(raw)
    except ValueError:
        return False
    return raw.strip().count(b"\n") > 0


def _validation_line(exc: ValidationError) -> str:
    details = validation_details(exc)
    more = f" (+{len(details) - 1} more; -v shows all)" if len(details) > 1 else ""
    return details[0] + more


def read_trajectories(path: Path) -> JsonlRead[Trajectory]:
    """Read ``trajectories.jsonl`` (or a run directory holding one); see :func:`read_jsonl`."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORIES_FILE
    return read_jsonl(path, Trajectory)


def append_trajectory(path: Path, trajectory: Trajectory) -> None:
    """Append one trajectory to ``path`` atomically (see :func:`append_jsonl`)."""
    append_jsonl(path, trajectory)


def drop_failed_trajectories(path: Path, ids: Iterable[str]) -> int:
    """Remove the trajectories of ``ids`` that ended on a model error (``stop_reason=error``)
    from ``path``, so their tasks can run again; return how many lines went.

    Every other line stays byte-identical; the file is rewritten atomically. A failed call
    stays in ``llm_calls.jsonl``, so nothing but the empty attempt is removed.
    """
    wanted = set(ids)
    kept: list[str] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            kept.append(line)
            continue
        if record.get("id") in wanted and record.get("stop_reason") == "error":
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_atomic(path, "".join(kept))
    return dropped


def trajectory_json_schema() -> dict[str, Any]:
    """The JSON Schema of a trajectories.jsonl line, for other tools reading our runs."""
    return Trajectory.model_json_schema()


# ---------------------------------------------------------------------------------------------
# Import from other harnesses (format: docs/trajectory-import.md)
# ---------------------------------------------------------------------------------------------


class ImportFunction(BaseModel):
    """The function of an OpenAI-style tool call."""

    name: str = Field(min_length=1)
    arguments: str | dict[str, Any] = "{}"


class ImportToolCall(BaseModel):
    """An OpenAI-style tool call of an assistant message."""

    id: str | None = None
    type: str = "function"
    function: ImportFunction


class ImportMessage(BaseModel):
    """One OpenAI-style chat message (other OpenAI fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ImportToolCall] | None = None
    tool_call_id: str | None = None
    cited_sections: list[str] = Field(
        default_factory=list, description="Our extension: skill section ids this step followed."
    )

    def text(self) -> str:
        """The content as text (the text parts of a list content, joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


class ImportOutcome(BaseModel):
    """How the imported trajectory ended."""

    model_config = ConfigDict(extra="forbid")

    passed: bool | None = Field(
        default=None, description="The verdict; may be left out when a suite scores 'answer'."
    )
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    answer: str | int | float | None = None
    details: str = ""


class ImportRecord(BaseModel):
    """One line of a trajectory import file (see docs/trajectory-import.md)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1)
    messages: list[ImportMessage] = Field(min_length=1)
    outcome: ImportOutcome
    id: str | None = Field(default=None, min_length=1)
    model: str = IMPORTED_MODEL
    skill_name: str | None = None
    skill_commit: str | None = None
    suite: str | None = None
    split: str = ""
    question: str | None = None
    seed: int = 0
    tokens_in: int | None = Field(default=None, ge=0, description="None: not measured.")
    tokens_out: int | None = Field(default=None, ge=0, description="None: not measured.")
    cost_usd: float | None = Field(default=None, ge=0.0, description="None: not measured.")
    latency_s: float = Field(default=0.0, ge=0.0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    stop_reason: StopReason | None = Field(
        default=None,
        description="Why the agent stopped (default: submitted when there is an answer, else "
        "unknown). Any other reason: the last assistant message is not an answer.",
    )

    @field_validator("seed", "latency_s", mode="before")
    @classmethod
    def _null_is_unknown(cls, value: Any) -> Any:
        # Exporters write null for what they did not measure; these fields are optional.
        # (Token counts and cost keep their null: unknown is not 0, see toolkit.known.)
        return 0 if value is None else value


class ImportLineError(BaseModel):
    """A line of an import file that was not imported (line 0: the file as a whole)."""

    line: int
    message: str
    file: str | None = None
    """The file, when the import read several (official logs: one file per task)."""
    details: list[str] = Field(default_factory=list)
    """Every problem on the line when there are several (``message`` shows the first)."""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{self.file}: {where}: {self.message}" if self.file else f"{where}: {self.message}"


class ImportReport(BaseModel):
    """What :func:`import_trajectories` did."""

    source: Path
    trajectories_path: Path
    format: Literal["chat", "official"] = "chat"
    imported: int = 0
    already_present: int = 0
    errors: list[ImportLineError] = Field(default_factory=list)
    trajectory_ids: list[str] = Field(default_factory=list)


def _tool_args(arguments: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"raw": arguments}
    return value if isinstance(value, dict) else {"value": value}


def _skill_ref(args: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(file, section id) of a read_skill_file call's arguments, if they name anything."""
    path = str(args.get("path") or "").strip()
    section = str(args.get("section") or "").strip()
    if "#" in section and not path:
        path, section = section.split("#", 1)
    if not path and not section:
        return None
    return (path or SKILL_MD, section or None)


def imported_prompt(messages: list[ImportMessage]) -> list[PromptMessage]:
    """The system and user messages of a chat before its first assistant message (pure).

    They are what the agent read before it acted: the system prompt (often the skill) and
    the task. :func:`imported_steps` keeps every later message in a step.
    """
    prompt: list[PromptMessage] = []
    for message in messages:
        if message.role == "assistant":
            break
        if message.role in ("system", "user"):
            prompt.append(PromptMessage(role=message.role, content=message.text()))
    return prompt


def _observe(step: Step, text: str) -> None:
    step.observation = f"{step.observation}\n{text}" if step.observation else text


def imported_steps(messages: list[ImportMessage]) -> tuple[list[Step], list[SectionUse], str]:
    """Steps, section uses and the last plain assistant text of an OpenAI-style chat (pure).

    Each tool call of an assistant message is a step whose observation is the matching
    ``tool`` message; an assistant message without tool calls is a ``respond`` step. A user
    or system message after a step, and a tool result no call claims, join the observation of
    the step before them; the messages before the first step are :func:`imported_prompt`.
    """
    call_ids = {call.id for message in messages for call in message.tool_calls or [] if call.id}
    results: dict[str, str] = {}
    unmatched: list[str] = []
    acted = False
    for message in messages:
        acted = acted or message.role == "assistant"
        if message.role == "tool":
            if message.tool_call_id in call_ids:
                results[str(message.tool_call_id)] = message.text()
            elif message.tool_call_id is None or not acted:
                unmatched.append(message.text())
    steps: list[Step] = []
    uses: list[SectionUse] = []
    last_text = ""
    for message in messages:
        if message.role in ("user", "system") and steps:
            # ReAct harnesses send observations back as user messages: keep each one as the
            # observation of the step before it (several are joined). A system message
            # there (a harness's reminder) is one too, labelled so it is not taken for output.
            text = message.text() if message.role == "user" else f"[system] {message.text()}"
            _observe(steps[-1], text)
            continue
        if message.role == "tool" and message.tool_call_id not in call_ids and steps:
            if message.tool_call_id is not None:  # answers no call: where it stands
                _observe(steps[-1], message.text())
            continue
        if message.role != "assistant":
            continue
        thought = message.text()
        calls = message.tool_calls or []
        if not calls:
            last_text = thought
            calls_or_none: list[ImportToolCall | None] = [None]
        else:
            calls_or_none = list(calls)
        for call in calls_or_none:
            index = len(steps)
            if call is None:
                action = Action(tool="respond", args={})
                observation = ""
            else:
                action = Action(tool=call.function.name, args=_tool_args(call.function.arguments))
                if call.id is not None and call.id in results:
                    observation = results[call.id]
                else:
                    observation = unmatched.pop(0) if unmatched else ""
            step = Step(
                index=index,
                thought=thought,
                action=action,
                observation=observation,
                cited_sections=list(message.cited_sections),
            )
            for ref in dict.fromkeys(message.cited_sections):
                file, section = (SKILL_MD, ref)
                if ref.startswith("references/") or ref == SKILL_MD:
                    file, section = ref, None
                uses.append(SectionUse(step=index, kind="cited", file=file, section_id=section))
            target = _skill_ref(action.args) if action.tool == "read_skill_file" else None
            if target is not None:
                file, section = target
                uses.append(SectionUse(step=index, kind="read", file=file, section_id=section))
                if section is None:
                    step.read_files.append(file)
                else:
                    step.read_sections.append(f"{file}#{section}")
            steps.append(step)
    for text in unmatched if steps else []:  # results no id-less call took: keep them too
        _observe(steps[-1], text)
    return steps, uses, last_text


def _import_line(record: ImportRecord, suite: Any, tasks: dict[str, Any] | None) -> Trajectory:
    """One import record as a :class:`Trajectory`; raises ValueError with a reason."""
    suite_name = record.suite or (suite.name if suite is not None else "")
    if suite is not None and record.suite and record.suite != suite.name:
        raise ValueError(f"suite is {record.suite!r} but the import is for {suite.name!r}")
    task = None
    if tasks is not None:
        task = tasks.get(record.task_id)
        if task is None:
            raise ValueError(f"task_id {record.task_id!r} is not a task of suite {suite.name!r}")
    steps, uses, last_text = imported_steps(record.messages)
    if not steps:
        raise ValueError(
            "the chat has no assistant message: nothing the agent did to analyse (give the "
            "assistant's replies and tool calls in messages)"
        )
    outcome = record.outcome
    answer: str | None = None
    if outcome.answer is not None:
        answer = str(outcome.answer)
    elif last_text and record.stop_reason in (None, "submitted"):
        # The answer after a "FINAL ANSWER:" label, as our own agent's replies are read.
        answer = parse_reply(last_text).answer or last_text
    if outcome.passed is not None:
        score = outcome.score if outcome.score is not None else float(outcome.passed)
        verdict = Verdict(
            passed=outcome.passed, score=score, details=outcome.details or "imported outcome"
        )
    elif task is not None and outcome.answer is not None:
        scored = suite.score(task, str(outcome.answer))
        verdict = Verdict(
            passed=scored.passed,
            score=scored.value,
            details=scored.details,
            predicted=scored.predicted,
            gold=scored.gold,
        )
    else:
        raise ValueError(
            "outcome.passed is missing (give it, or give outcome.answer and import with a "
            "suite to score it)"
        )
    question = record.question
    if question is None:
        question = next((m.text() for m in record.messages if m.role == "user"), "")
    commit = record.skill_commit or (NO_SKILL_COMMIT if record.skill_name is None else "unknown")
    # stop_reason came later: left out while unset, so old import lines keep their ids and
    # importing them again still adds nothing.
    # Token counts and cost not given were hashed as 0 before they could be unknown: so
    # they stay, or importing an old file again would add its trajectories a second time.
    hashed = record.model_copy(
        update={
            "tokens_in": record.tokens_in or 0,
            "tokens_out": record.tokens_out or 0,
            "cost_usd": record.cost_usd or 0.0,
        }
    )
    content = hashed.model_dump_json(
        exclude={"id", "stop_reason"} if record.stop_reason is None else {"id"}
    )
    traj_id = (
        record.id
        or _digest(
            [suite_name, record.task_id, commit, record.model, record.seed, "imported", content]
        )[:16]
    )
    return Trajectory(
        id=traj_id,
        task_id=record.task_id,
        suite=suite_name,
        split=record.split or (task.split if task is not None else ""),
        question=question,
        skill_name=record.skill_name,
        skill_commit=commit,
        model=record.model,
        seed=record.seed,
        delivery="imported",
        protocol="imported",
        prompt=imported_prompt(record.messages),
        steps=steps,
        final_answer=answer,
        verdict=verdict,
        section_uses=uses,
        tokens_in=record.tokens_in,
        tokens_out=record.tokens_out,
        cost_usd=record.cost_usd,
        latency_s=record.latency_s,
        stop_reason=record.stop_reason or ("submitted" if answer is not None else "unknown"),
        source="import",
        metadata=record.metadata,
    )


ImportFormat = Literal["auto", "chat", "official"]


def _chat_records(raw: bytes) -> Iterator[tuple[int, ImportRecord | ImportLineError]]:
    """(line number, record) of a chat-format import file, or an error per bad line."""
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, ImportRecord.model_validate_json(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield number, ImportLineError(line=number, message=f"not UTF-8 ({exc.reason})")
        except ValidationError as exc:
            details = validation_details(exc)
            yield (
                number,
                ImportLineError(
                    line=number,
                    message=_validation_line(exc),
                    details=details if len(details) > 1 else [],
                ),
            )


def _official_records(
    files: list[Path], results: Mapping[str, bool] | None
) -> Iterator[tuple[int, ImportRecord | ImportLineError]]:
    """One record per official log file, or the errors that kept it out."""
    from toolkit.official_logs import parse_official_log

    for file in files:
        try:
            # utf-8-sig: Windows tools start a file with a byte-order mark (not JSON).
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            yield 0, ImportLineError(line=0, file=file.name, message=f"cannot read: {exc}")
            continue
        log = parse_official_log(file, text, results)
        for error in log.errors:
            yield 0, error.model_copy(update={"file": file.name})
        if log.record is not None:
            yield 0, log.record


def _detect_format(
    source: Path, raw: bytes | None, files: list[Path]
) -> Literal["chat", "official"]:
    from toolkit.official_logs import looks_official

    if raw is None:  # a folder: told by its first file's first record
        try:
            with files[0].open("rb") as handle:
                head = handle.read(65536)
        except OSError as exc:
            raise TrajectoryError(f"cannot read {files[0]}: {exc.strerror or exc}") from None
    else:
        head = raw
    head = head.removeprefix(codecs.BOM_UTF8)
    first = next((line for line in head.split(b"\n") if line.strip()), b"")
    return "official" if looks_official(first.decode("utf-8", "replace")) else "chat"


def import_trajectories(
    path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    suite: Any = None,
    format: ImportFormat = "auto",
    results: str | os.PathLike[str] | Mapping[str, bool] | None = None,
) -> ImportReport:
    """Import trajectories from another harness into ``run_dir/trajectories.jsonl``.

    Two formats (docs/trajectory-import.md): ``chat``, a JSONL file with one OpenAI-style
    chat per line (``messages``, an ``outcome``, a ``task_id``); and ``official``, the agent
    logs of the official Trace2Skill pipeline (one JSONL file per task, or a folder of them;
    see :mod:`toolkit.official_logs`). ``auto`` tells them apart by the first record. Every
    line or file is validated on its own: good ones are imported (all in one atomic append),
    bad ones are reported with what is wrong. Trajectories already in the run are skipped,
    so importing the same file twice adds nothing.

    Args:
        path: the import file (or, for official logs, a folder of them).
        run_dir: the run directory (created if anything is imported).
        suite: a suite name or :class:`~toolkit.tasks.Suite`: task ids are checked against it
            and an ``outcome`` without ``passed`` is scored from its ``answer``.
        format: ``auto``, ``chat`` or ``official``.
        results: official logs only: verdicts by task id (a mapping or a results file, see
            :func:`toolkit.official_logs.read_results`) that override each log's own
            ``success`` flag.

    Raises:
        TrajectoryError: the file cannot be read, or the results file is malformed.
        ToolkitError: an unknown suite.
    """
    source = Path(path)
    run_path = Path(run_dir)
    raw: bytes | None = None
    if source.is_dir():
        files = sorted(source.glob("*.jsonl"))
        if not files:
            raise TrajectoryError(f"{source} is a folder with no *.jsonl agent logs")
    else:
        try:
            # Without the byte-order mark Windows tools write first, line 1 is JSON again.
            raw = source.read_bytes().removeprefix(codecs.BOM_UTF8)
        except OSError as exc:
            raise TrajectoryError(f"cannot read {source}: {exc.strerror or exc}") from None
        files = [source]
    kind = _detect_format(source, raw, files) if format == "auto" else format
    if kind == "chat" and raw is None and format == "chat":
        # Forced: the folder's content says nothing about what the user meant.
        raise TrajectoryError(
            f"--format chat takes one JSONL file, not a folder ({source}): import each file "
            "on its own (a folder is for official logs: --format official or auto)"
        )
    if kind == "chat" and raw is None:
        raise TrajectoryError(
            f"{source} is a folder of chat-format lines ({files[0].name} starts with one); "
            "the chat format is one JSONL file: import each file (a folder is for official "
            "logs, one file per task)"
        )
    if kind == "chat" and results is not None:
        raise TrajectoryError(
            "--results applies to official logs only; a chat line carries its own outcome"
        )
    verdicts: Mapping[str, bool] | None = None
    if results is not None and not isinstance(results, Mapping):
        from toolkit.official_logs import read_results

        try:
            verdicts = read_results(Path(results))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TrajectoryError(f"cannot read the results file: {exc}") from None
    elif results is not None:
        verdicts = results
    suite_obj = None
    tasks = None
    if suite is not None:
        from toolkit.tasks import get_suite, suite_source

        suite_obj = get_suite(suite) if isinstance(suite, str) else suite
        tasks = {t.id: t for t in suite_obj.load_all().tasks}
    target = run_path / TRAJECTORIES_FILE
    existing = {t.id for t in read_trajectories(target).records} if target.exists() else set()
    report = ImportReport(source=source, trajectories_path=target, format=kind)
    good: list[Trajectory] = []
    items = _official_records(files, verdicts) if kind == "official" else _chat_records(raw or b"")
    for number, item in items:
        if isinstance(item, ImportLineError):
            report.errors.append(item)
            continue
        try:
            trajectory = _import_line(item, suite_obj, tasks)
        except ValueError as exc:
            file = item.metadata.get("official_log") if kind == "official" else None
            report.errors.append(ImportLineError(line=number, message=str(exc), file=file))
            continue
        if trajectory.id in existing:
            report.already_present += 1
            continue
        existing.add(trajectory.id)
        good.append(trajectory)
    if good:
        run_path.mkdir(parents=True, exist_ok=True)
        append_jsonl(target, good)
    report.imported = len(good)
    report.trajectory_ids = [t.id for t in good]
    if not good and not run_path.exists():
        return report  # nothing imported: do not create a run directory for nothing
    # Each import adds to the run: the stage keeps every source and the running totals
    # (a second import replaced the first one's record).
    manifest = read_manifest(run_path)
    earlier = manifest.stages.get("import") if manifest else None
    before = earlier.counts if earlier else {}
    sources = list((earlier.config.get("sources") if earlier else None) or [])
    if earlier and not sources and earlier.config.get("source"):
        sources = [earlier.config["source"]]
    update_stage(
        run_path,
        "import",
        status="done",
        ended_at=now_iso(),
        config={
            "source": str(source),
            "sources": list(dict.fromkeys([*sources, str(source)])),
            "format": kind,
            "suite": suite_obj.name if suite_obj else None,
            "suite_source": suite_source(suite_obj) if suite_obj else {},
        },
        counts={
            "imported": int(before.get("imported", 0)) + report.imported,
            "already_present": report.already_present,
            "bad_lines": len(report.errors),
        },
    )
    return report


__all__ = [
    "DELIVERIES",
    "NO_SKILL_COMMIT",
    "SKILL_MD",
    "TRAJECTORY_SCHEMA_VERSION",
    "Action",
    "Delivery",
    "ImportLineError",
    "ImportRecord",
    "ImportReport",
    "JsonlRead",
    "PromptMessage",
    "SectionUse",
    "Step",
    "StopReason",
    "Trajectory",
    "TrajectoryError",
    "Verdict",
    "append_jsonl",
    "append_trajectory",
    "import_trajectories",
    "imported_prompt",
    "imported_steps",
    "read_jsonl",
    "read_trajectories",
    "repair_jsonl",
    "skill_commit",
    "task_seed",
    "trajectory_id",
    "trajectory_json_schema",
]
