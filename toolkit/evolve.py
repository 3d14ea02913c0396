"""``evolve``: the whole Trace2Skill method in one resumable call (orchestration only).

Stages, in order, each one a call into the module that owns it (as inspect_ai's eval set
composes eval)::

    base         S0 committed as t2s/<run>/base (toolkit.repo; the user's tree untouched);
                 Creation (``create``): first drafted by the author model (toolkit.draft)
    rollout      the agent with S0 on the evolve split (toolkit.rollout)
    analyse      one analysis per trajectory -> leaf patches (toolkit.analysts)
    consolidate  hierarchical merges -> S* on t2s/<run>/result (toolkit.consolidate)
    sequential   instead of analyse + consolidate (consolidation="sequential", the paper's
                 Seq-B baselines): batch after batch, analyses against the current skill
                 and a merge into it, a chain t2s/<run>/seq/<step> (consolidate.sequential)
    eval-s0      S0 on the test split (toolkit.evaluate)
    eval-result  S* on the same tasks and seeds (paired with S0)
    eval-none    with no_skill_baseline: the agent with no skill on the same tasks
    eval-memory  with memory_baseline: S0 plus a memory bank of the analyses' lessons, the
                 top-1 by BM25 per task in the prompt (toolkit.memory), on the same tasks
    summary      scores, flips, patches kept/dropped, support, cost and time per stage
    bundle       the run's refs as runs/<run>/refs.bundle

What evolve adds is the glue: an up-front estimate (:func:`estimate`), one lock per run
(:func:`evolve_lock`), a budget on model calls, tokens and minutes (:class:`Budget`, enforced
between units of work by :class:`BudgetExecutor`), and per-stage accounting. Every stage is
itself resumable (finished units are records in the run folder or refs in git), so
``resume=True`` after a kill or a budget stop re-enters the first unfinished stage and redoes
nothing that finished. The evolve stage record in ``manifest.json`` holds the config (so a
resume needs only the run id) and the per-stage figures; ``summary.json`` holds the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import statistics
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.atomic import write_atomic
from toolkit.errors import LLMError, ToolkitError, ToolkitNotice
from toolkit.executor import Executor, LocalExecutor
from toolkit.llm.calls import line_budget_tokens, line_cost, line_counts
from toolkit.runs import CALLS_FILE, REFS_BUNDLE, read_jsonl_dicts
from toolkit.tokens import TokenTally

if TYPE_CHECKING:
    from toolkit.analysts import AnalyseConfig
    from toolkit.evaluate import Comparison, EvalResult
    from toolkit.llm.config import LLMConfig
    from toolkit.memory import Memory
    from toolkit.repo import SkillRepo
    from toolkit.skill import Skill
    from toolkit.tasks import Suite
    from toolkit.trajectory import Trajectory

EVOLVE_SCHEMA_VERSION = 1
EVOLVE_STAGE = "evolve"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".evolve.lock"

#: The stages of an evolution, in order.
STAGES: tuple[str, ...] = (
    "base",
    "rollout",
    "analyse",
    "consolidate",
    "sequential",
    "eval-s0",
    "eval-result",
    "eval-none",
    "eval-memory",
    "summary",
    "bundle",
)


def active_stages(config: EvolveConfig) -> tuple[str, ...]:
    """The stages ``config`` runs: ``eval-none`` only with a no-skill baseline; ``analyse``
    and ``consolidate`` (parallel), or ``sequential`` in their place."""
    skip = {"sequential"} if config.consolidation == "parallel" else {"analyse", "consolidate"}
    if not config.no_skill_baseline:
        skip.add("eval-none")
    if not config.memory_baseline:
        skip.add("eval-memory")
    return tuple(s for s in STAGES if s not in skip)


def result_stage(config: EvolveConfig) -> str:
    """The stage that makes S* (``t2s/<run>/result``): consolidate or sequential."""
    return "sequential" if config.consolidation == "sequential" else "consolidate"


T = TypeVar("T")
R = TypeVar("R")


class EvolveError(ToolkitError):
    """An evolution cannot start or go on as asked."""


#: Exit status of ``trace2skill evolve`` when the run learned nothing (no result, no error).
NOTHING_LEARNED_EXIT = 5


class NothingLearned(EvolveError):
    """The run ended without a result with nothing wrong: the analysts had no trajectory to
    learn from, or no analysis passed the quality gate. Resuming cannot change that (see
    :func:`dead_end`); a new run with other settings may. A scheduled CI job treats it as
    "no PR this time", as it does the PR gate's refusal."""

    exit_code = NOTHING_LEARNED_EXIT
    label = "Nothing learned"


class BudgetExceeded(ToolkitError):
    """The budget ran out; the run stopped cleanly between units and can be resumed."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


class EvolveConfig(BaseModel):
    """Everything an evolution needs; stored in the manifest so a resume needs only the run id.

    Defaults are the paper's main setting: Deepening (start from the written skill), +Error
    analysts (agentic), parallel hierarchical consolidation (B=5, at most 5 levels);
    ``consolidation="sequential"`` with ``seq_batch`` 1 or 4 is the paper's Seq-B baseline.
    Creation (``create``): the author model drafts S0 into the new folder ``skill``
    (toolkit.draft).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = EVOLVE_SCHEMA_VERSION
    run_id: str = Field(description="Run id: runs/<run-id>/ and refs/heads/t2s/<run-id>/.")
    runs_dir: Path = Field(Path("runs"), description="Folder holding run folders.")
    skill: Path = Field(description="The skill folder S0 (inside a git repository), as given.")
    skill_dir: Path | None = Field(
        None,
        description="The skill folder as a whole path when the run started: a resume from "
        "another directory finds it there (``skill`` as given, relative to the directory the "
        "run started in, is tried first, so a run folder copied into a clone resumes there).",
    )
    create: bool = Field(
        False,
        description="Creation: the author model drafts S0 for the new folder ``skill`` (it must "
        "not exist); the draft lives only in t2s/<run>/base and runs/<run>/draft/.",
    )
    draft_examples: int = Field(
        5, ge=1, le=20, description="Creation: evolve-split questions the author reads."
    )
    suite: str = Field(description="Task suite: gsm8k, wikitq, spreadsheet, jsonl.")
    data: Path | None = Field(None, description="The suite's data folder (jsonl: task file).")
    data_path: Path | None = Field(
        None,
        description="``data`` as a whole path when the run started: a resume from another "
        "directory finds it there (``data`` as given is tried first, as for the skill).",
    )
    scoring: str | None = Field(None, description="jsonl suites: exact, numeric or regex.")
    tolerance: float | None = Field(None, description="jsonl suites: numeric tolerance.")
    model: str | None = Field(None, description="Agent model (default: the LLM config's).")
    author_model: str | None = Field(
        None, description="Model of analysts and merges (default: the agent's model)."
    )
    evolve_split: str = Field("train", description="Split the skill learns from.")
    evolve_limit: int | None = Field(None, ge=1, description="Seeded subset of the evolve split.")
    test_split: str = Field("test", description="Held-out split S0 and S* are compared on.")
    test_limit: int | None = Field(None, ge=1, description="Seeded subset of the test split.")
    seed: int = Field(0, description="Run seed: task subsets, sampling, bootstrap.")
    analysts: Literal["error", "success", "combined"] = Field(
        "error", description="+Error, +Success or +Combined (the paper's ablations)."
    )
    error_analyst: Literal["agentic", "single"] = Field(
        "agentic", description="Agentic error analyst (fix re-checked) or one call."
    )
    merge_batch: int = Field(5, ge=2, description="B: most patches merged in one group.")
    max_levels: int = Field(5, ge=1, description="L_max: most consolidation levels.")
    merge_strategy: Literal["llm", "git"] = Field(
        "llm", description="llm: the merge operator for every group; git: union when clean."
    )
    consolidation: Literal["parallel", "sequential"] = Field(
        "parallel",
        description="parallel: patches made against S0, merged as a tree (the paper's "
        "method); sequential: the Seq-B baseline, the skill edited batch after batch.",
    )
    seq_batch: int = Field(4, ge=1, description="Seq-B: trajectories per sequential step.")
    protocol: Literal["json", "code", "tools", "plain"] = Field(
        "code", description="Agent protocol."
    )
    delivery: Literal["system", "progressive"] = Field("system", description="Skill delivery.")
    parallel: int | None = Field(
        None, ge=1, description="Units at once (default: 1 for local/ models, else 4)."
    )
    allow_dirty: bool = Field(False, description="Snapshot a skill folder with uncommitted edits.")
    no_skill_baseline: bool = Field(
        False,
        description="Also evaluate the agent with no skill on the test tasks (eval-none), so "
        "the summary shows what S0 itself adds.",
    )
    memory_baseline: bool = Field(
        False,
        description="Also evaluate S0 with a retrieval memory of the run's kept analyses "
        "(top-1 by BM25 per task; eval-memory): the ReasoningBank-style baseline.",
    )
    api_base: str | None = Field(
        None,
        description="The OpenAI-compatible server of the models (a password in the URL is not "
        "stored); a resume calls it again unless given another.",
    )
    author_api_base: str | None = Field(
        None,
        description="The author model's server when it is not the agent's: a URL, or "
        "'default' for the provider's own endpoint (a hosted author beside an "
        "agent on a local server); None: the same as api_base.",
    )
    no_cache: bool = Field(
        False, description="Neither read nor write the response cache (a resume keeps it so)."
    )
    reuse: list[Path] = Field(
        default_factory=list,
        description="Other run folders (whole paths) whose finished tasks of the same "
        "condition stand in for the run's own (--reuse); a resume reuses them too.",
    )

    @property
    def run_dir(self) -> Path:
        """``runs_dir/run_id``."""
        return self.runs_dir / self.run_id


def default_run_id(skill: str | Path, now: float | None = None) -> str:
    """``evolve-<skill>-<UTC timestamp>``, e.g. ``evolve-wikitq-table-qa-20260101-120000``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(skill).resolve().name).strip("-.") or "skill"
    return f"evolve-{name}-{stamp}"


# ---------------------------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------------------------


class Budget(BaseModel):
    """Most model calls, tokens (in + out) and minutes one ``evolve`` call may spend.

    Counted from this call's start (a resume gets a fresh budget); calls answered from the
    response cache cost nothing and are not counted. None: no limit. A call whose provider
    reported no token counts is counted at its estimate (``tokens_estimate`` in the calls
    log: the reported counts, the rest from its text at 4 characters a token), with one
    notice: leaving it out would lift the limit altogether for a server that never reports
    usage, and stopping at the first such call would make the limit unusable with one.
    """

    calls: int | None = Field(None, ge=1)
    tokens: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)

    @property
    def unlimited(self) -> bool:
        """True when no limit is set."""
        return self.calls is None and self.tokens is None and self.minutes is None


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9}


def parse_budget(text: str | None) -> Budget:
    """Parse ``calls=500,tokens=2M,minutes=30`` (any subset; k/M suffixes) into a Budget.

    Raises:
        EvolveError: an unknown key or a value that is not a positive number.
    """
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in Budget.model_fields:
            raise EvolveError(
                f"bad budget item {part!r}: use calls=N, tokens=N and/or minutes=N, "
                "e.g. --budget calls=500,tokens=2M,minutes=30"
            )
        raw = raw.strip().lower()
        scale = _SUFFIX.get(raw[-1:], 1.0)
        try:
            value = float(raw[:-1] if raw[-1:] in _SUFFIX else raw) * scale
        except ValueError:
            raise EvolveError(f"bad budget value {part!r}: not a number") from None
        if not (value > 0 and math.isfinite(value)):
            raise EvolveError(f"bad budget value {part!r}: must be a positive finite number")
        if key != "minutes" and value != int(value):
            raise EvolveError(f"bad budget value {part!r}: {key} is a whole number")
        if key in values:
            raise EvolveError(f"bad budget {text!r}: {key} is given twice")
        values[key] = value
    try:
        return Budget(
            calls=int(values["calls"]) if "calls" in values else None,
            tokens=int(values["tokens"]) if "tokens" in values else None,
            minutes=values.get("minutes"),
        )
    except ValidationError as exc:
        raise EvolveError(f"bad budget {text!r}: {exc.errors()[0]['msg']}") from None


class Spend(BaseModel):
    """Model use counted from a calls log: uncached calls, tokens, cost, cache hits."""

    calls: int = 0
    cached: int = 0
    tokens_in: int = Field(0, description="Prompt tokens of the calls that reported them.")
    tokens_out: int = Field(0, description="Completion tokens of the calls that reported them.")
    unreported: int = Field(0, description="Uncached calls without reported token counts.")
    estimated: int = Field(0, description="The estimated tokens of those calls.")
    cost_usd: float = Field(0.0, description="Cost in USD of the calls that were priced.")
    unpriced: int = Field(0, description="Uncached calls whose cost is unknown.")

    @property
    def tokens(self) -> int:
        """Prompt + completion tokens of the calls that reported them."""
        return self.tokens_in + self.tokens_out

    @property
    def budget_tokens(self) -> int:
        """Tokens as the budget counts them: reported, plus the estimates of the others."""
        return self.tokens + self.estimated

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            **{name: getattr(self, name) + getattr(other, name) for name in Spend.model_fields}
        )

    def __sub__(self, other: Spend) -> Spend:
        return Spend(
            **{name: getattr(self, name) - getattr(other, name) for name in Spend.model_fields}
        )


class Meter:
    """Reads the run's ``llm_calls.jsonl`` incrementally (from where it stood at the start)
    and checks the :class:`Budget` against what this call spent and how long it ran."""

    def __init__(self, calls_path: Path, budget: Budget | None = None) -> None:
        """Start counting at the current end of ``calls_path``."""
        self.path = calls_path
        self.budget = budget or Budget()
        self.offset = calls_path.stat().st_size if calls_path.exists() else 0
        self.started = time.monotonic()
        self.spent = Spend()
        self.last_ended_at: float | None = None  # of the latest call read (epoch seconds)
        self._lock = threading.Lock()  # the stage heartbeat reads it from its own thread
        self._noted_estimate = False

    def read(self) -> Spend:
        """What was spent since the start (reads only the lines appended since last time)."""
        with self._lock:
            return self._read()

    def _read(self) -> Spend:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self.spent
        end = chunk.rfind(b"\n") + 1  # a line being written is read next time
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record.get("ended_at"), int | float):
                self.last_ended_at = max(self.last_ended_at or 0.0, float(record["ended_at"]))
            if record.get("cache_hit"):
                self.spent = self.spent + Spend(cached=1)
                continue
            self.spent = self.spent + _spend_of(record)
        self.offset += end
        self._note_estimate()
        return self.spent

    def _note_estimate(self) -> None:
        """Say once that a token budget counts calls without reported usage by estimate."""
        if self._noted_estimate or self.budget.tokens is None or not self.spent.unreported:
            return
        self._noted_estimate = True
        warnings.warn(
            "the model server reports no token usage for some calls: --budget tokens counts "
            "them at an estimate from their text (4 characters a token), and the summary "
            "leaves them out of its token figures",
            ToolkitNotice,
            stacklevel=2,
        )

    @property
    def minutes(self) -> float:
        """Minutes since the start."""
        return (time.monotonic() - self.started) / 60

    def exceeded(self) -> str | None:
        """Which limit is spent (e.g. ``calls 120/100``), or None while within budget."""
        if self.budget.unlimited:
            return None
        spent, budget = self.read(), self.budget
        if budget.calls is not None and spent.calls >= budget.calls:
            return f"calls {spent.calls}/{budget.calls}"
        if budget.tokens is not None and spent.budget_tokens >= budget.tokens:
            guessed = (
                f" ({spent.estimated:,} of them estimated for {spent.unreported} calls "
                "without reported usage)"
                if spent.unreported
                else ""
            )
            return f"tokens {spent.budget_tokens:,}/{budget.tokens:,}{guessed}"
        if budget.minutes is not None and self.minutes >= budget.minutes:
            return f"minutes {self.minutes:.1f}/{budget.minutes:g}"
        return None


def _spend_of(record: dict[str, Any]) -> Spend:
    """One uncached call of the calls log (a dict, as read) as a :class:`Spend`."""
    count_in, count_out = line_counts(record)
    cost = line_cost(record)
    # An unpriced call is counted as such, not as $0.
    spend = Spend(calls=1, cost_usd=cost or 0.0, unpriced=int(cost is None))
    if count_in is None or count_out is None:
        return spend + Spend(unreported=1, estimated=line_budget_tokens(record))
    return spend + Spend(tokens_in=count_in, tokens_out=count_out)


class BudgetExecutor(Executor):
    """Runs units like :class:`LocalExecutor`, but starts no new unit once the budget is
    spent: units in flight finish (and are saved by the stage), then :class:`BudgetExceeded`
    is raised, so the stage stops cleanly and a resume picks up the units never started."""

    name = "local"

    def __init__(self, meter: Meter, stage: Callable[[], str]) -> None:
        """Check ``meter`` before each unit; ``stage`` names the running stage for messages."""
        self.meter = meter
        self.stage = stage

    async def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Sequence[T],
        *,
        concurrency: int,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """See :meth:`Executor.map`."""
        if self.meter.budget.unlimited:
            return await LocalExecutor().map(
                fn, items, concurrency=concurrency, on_result=on_result
            )
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        results: list[Any] = [None] * len(items)
        pending = iter(range(len(items)))
        spent: list[str] = []

        async def worker() -> None:
            for index in pending:
                why = self.meter.exceeded()
                if why is not None:
                    spent.append(why)
                    return
                result = await fn(items[index])
                results[index] = result
                if on_result is not None:
                    on_result(index, result)

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        if spent:
            stage = self.stage()
            # Said after the units in flight finished: what was spent in the end.
            why = self.meter.exceeded() or spent[0]
            raise BudgetExceeded(f"budget spent ({why}) during stage {stage}", stage)
        return results


# ---------------------------------------------------------------------------------------------
# Estimate
# ---------------------------------------------------------------------------------------------


class Rates(BaseModel):
    """Assumptions behind an :class:`Estimate` (shown with it)."""

    steps_per_task: float = Field(4.0, description="Agent model calls per task.")
    fail_rate: float = Field(0.5, description="Share of evolve tasks failing (unknown up front).")
    analyst_calls: float = Field(6.0, description="Calls per agentic analysis (single: 1).")
    tokens_per_call: int = Field(3000, description="Prompt + completion tokens per call.")
    seconds_per_call: float = Field(3.0, description="Wall seconds per call.")
    measured: bool = Field(
        False, description="Calls per task, failing share and call costs are the run's own."
    )
    from_reuse: bool = Field(
        False,
        description="Calls per task, failing share and task and call costs come from the S0 "
        "tasks the --reuse runs hold (a fresh run, before any of its own).",
    )
    unit_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="Measured wall seconds of one unit (median) by kind, task, analysis or "
        "merge; where known they set a stage's minutes instead of calls x seconds per call.",
    )


#: Seconds per model call measured on the 2-core machine (see README "make demo").
_SECONDS_PER_CALL = {"local/qwen2.5-coder-0.5b": 15.0, "local/": 40.0, "fake/": 0.2}


def default_rates(model: str) -> Rates:
    """The assumptions for ``model``: measured call times for the embedded models."""
    seconds = next((s for prefix, s in _SECONDS_PER_CALL.items() if model.startswith(prefix)), 3.0)
    return Rates(seconds_per_call=seconds)


def measured_rates(run_dir: Path, assumed: Rates) -> Rates:
    """``assumed`` with what a run's own files show in place of the guesses: model calls per
    task and the failing share from its rollouts, calls per analysis from its analyses, tokens
    and seconds per call from its fresh model calls (cache hits and failed calls left out).
    Unchanged before any of those exist."""
    from toolkit.runs import ANALYSES_FILE, MERGES_FILE, TRAJECTORIES_FILE
    from toolkit.trajectory import read_trajectories

    update: dict[str, Any] = {}
    unit_seconds: dict[str, float] = {}
    path = run_dir / TRAJECTORIES_FILE
    if path.exists():
        tasks = [t for t in read_trajectories(path).records if t.stop_reason != "error"]
        update, unit_seconds = _task_rates(tasks)
    # Units replayed from the response cache took no time and used no tokens: left out.
    analyses = [r for r in read_jsonl_dicts(run_dir / ANALYSES_FILE) if r.get("turns")]
    if analyses:
        update["analyst_calls"] = round(sum(r["turns"] for r in analyses) / len(analyses), 2)
    for kind, name in (("analysis", ANALYSES_FILE), ("merge", MERGES_FILE)):
        spans = [
            float(r["ended_at"]) - float(r["started_at"])
            for r in read_jsonl_dicts(run_dir / name)
            if r.get("tokens_in", 0) != 0 and r.get("started_at") and r.get("ended_at")
        ]
        if spans:
            unit_seconds[kind] = statistics.median(spans)
    if unit_seconds:
        update["unit_seconds"] = {k: round(v, 1) for k, v in unit_seconds.items()}
    calls = [
        c
        for c in read_jsonl_dicts(run_dir / CALLS_FILE)
        if not c.get("cache_hit") and not c.get("error") and c.get("model_requests")
    ]
    if calls:
        # Tokens per call from the calls that reported them; estimates where none did (a
        # server that never reports usage), so a resume's estimate still says something.
        tokens = TokenTally.of(line_counts(c) for c in calls)
        if tokens.mean is not None:
            update["tokens_per_call"] = max(1, round(tokens.mean))
        else:
            guessed = sum(line_budget_tokens(c) for c in calls) / len(calls)
            update["tokens_per_call"] = max(1, round(guessed))
        seconds = sum(float(c.get("latency_s") or 0.0) for c in calls) / len(calls)
        update["seconds_per_call"] = round(seconds, 1)
    return assumed.model_copy(update={**update, "measured": bool(update)})


def _task_rates(tasks: Sequence[Trajectory]) -> tuple[dict[str, Any], dict[str, float]]:
    """Calls per task and the failing share of finished ``tasks``, and the median seconds of
    those that called the model (a replay from the cache records 0 tokens and no time; an
    unknown count, None, was a call)."""
    if not tasks:
        return {}, {}
    update: dict[str, Any] = {
        "steps_per_task": round(sum(len(t.steps) for t in tasks) / len(tasks), 2),
        "fail_rate": sum(not t.passed for t in tasks) / len(tasks),
    }
    fresh = [t.latency_s for t in tasks if t.tokens_in is None or t.tokens_in > 0]
    return update, ({"task": statistics.median(fresh)} if fresh else {})


def reused_rates(tasks: Sequence[Trajectory], assumed: Rates) -> Rates:
    """``assumed`` with what the S0 ``tasks`` a fresh run reuses show (same skill, model,
    agent and seed as its own rollouts will be): calls per task, the failing share, seconds
    per task, and tokens and seconds per call of the fresh ones. Unchanged without any."""
    update, unit_seconds = _task_rates(tasks)
    fresh = [t for t in tasks if t.steps and t.tokens_in is not None and t.tokens_in > 0]
    steps = sum(len(t.steps) for t in fresh)
    if steps:
        update["tokens_per_call"] = max(
            1, round(sum(t.tokens_in + (t.tokens_out or 0) for t in fresh) / steps)
        )
        update["seconds_per_call"] = round(sum(t.latency_s for t in fresh) / steps, 1)
    if unit_seconds:
        update["unit_seconds"] = {k: round(v, 1) for k, v in unit_seconds.items()}
    return assumed.model_copy(update={**update, "from_reuse": bool(update)})


class StageEstimate(BaseModel):
    """Expected model calls, tokens and minutes of one stage."""

    stage: str
    units: int = Field(description="Units of work (tasks, analyses, merges).")
    calls: int
    tokens: int
    minutes: float


class Estimate(BaseModel):
    """What an evolution will roughly cost, before it starts."""

    stages: list[StageEstimate]
    rates: Rates
    left: bool = Field(False, description="Of the work left in a resumed run, not the whole.")
    reused: dict[str, int] = Field(
        default_factory=dict, description="Tasks per stage the --reuse runs hold finished."
    )

    @property
    def calls(self) -> int:
        """Total calls."""
        return sum(s.calls for s in self.stages)

    @property
    def tokens(self) -> int:
        """Total tokens."""
        return sum(s.tokens for s in self.stages)

    @property
    def minutes(self) -> float:
        """Total minutes."""
        return sum(s.minutes for s in self.stages)


def merge_count(patches: int, batch: int, max_levels: int) -> int:
    """Group merges of a hierarchical consolidation of ``patches`` leaves, as the
    consolidation plans them: groups of at most ``batch`` level by level; at level
    ``max_levels``, or once one group holds everything left, one final forced merge (so
    ``max_levels`` 1 is a single merge of every leaf)."""
    return merge_plan(patches, batch, max_levels)[0]


def merge_plan(patches: int, batch: int, max_levels: int) -> tuple[int, int]:
    """(groups, groups of one child) of the consolidation :func:`merge_count` describes.

    Groups are balanced (``consolidate.plan_balanced``): sizes differ by at most one, so a
    level of ``g`` groups over ``n`` nodes has ``max(0, 2g - n)`` groups of one (only with
    ``batch`` 2 and an odd ``n``), each passed up without a model call.
    """
    merges, singles, level, nodes = 0, 0, 0, patches
    while nodes > 1:
        level += 1
        if level >= max_levels or nodes <= batch:
            return merges + 1, singles
        groups = math.ceil(nodes / batch)
        merges, singles, nodes = merges + groups, singles + max(0, 2 * groups - nodes), groups
    return merges, singles


#: The unit of each stage, as :attr:`Rates.unit_seconds` names it (evaluations: ``task``).
_UNIT_KIND = {"base": "draft", "analyse": "analysis", "consolidate": "merge"}


def estimate(
    config: EvolveConfig,
    evolve_tasks: int,
    test_tasks: int,
    rates: Rates,
    concurrency: int,
    finished: Mapping[str, float] | None = None,
    patches: int | None = None,
) -> Estimate:
    """Expected calls, tokens and minutes per stage (pure; the assumptions are in ``rates``).

    ``finished``: units of each stage already done (``math.inf`` for a finished stage), so a
    resume's estimate is of the work left. ``patches``: the leaf patches the analyses kept,
    once known; the consolidation is planned from them instead of from every analysis. A
    sequential consolidation is one row, ``sequential``, whose units are its steps.
    """
    finished = finished or {}
    failing = {"error": rates.fail_rate, "success": 1 - rates.fail_rate, "combined": 1.0}
    analyses = math.ceil(evolve_tasks * failing[config.analysts])
    per_analysis = rates.analyst_calls if config.error_analyst == "agentic" else 1.0
    if config.analysts == "success":
        per_analysis = 1.0
    leaves = analyses if patches is None else patches
    merges, singles = merge_plan(leaves, config.merge_batch, config.max_levels)
    merged = merges - singles  # a group of one is passed up without a call
    merge_calls = merged if config.merge_strategy == "llm" else math.ceil(merged / 2)
    plan = [
        *([("base", 1, 1.0, 1)] if config.create else []),  # Creation: the author's draft
        ("rollout", evolve_tasks, evolve_tasks * rates.steps_per_task, concurrency),
        ("analyse", analyses, analyses * per_analysis, concurrency),
        ("consolidate", merges, merge_calls, concurrency),
        ("sequential", 0, 0.0, 1),  # computed below when it runs
        ("eval-s0", test_tasks, test_tasks * rates.steps_per_task, concurrency),
        ("eval-result", test_tasks, test_tasks * rates.steps_per_task, concurrency),
        *(
            [("eval-none", test_tasks, test_tasks * rates.steps_per_task, concurrency)]
            if config.no_skill_baseline
            else []
        ),
        *(
            [("eval-memory", test_tasks, test_tasks * rates.steps_per_task, concurrency)]
            if config.memory_baseline
            else []
        ),
    ]
    stages = []
    active = active_stages(config)
    for name, units, calls, width in plan:
        if name not in active:
            continue
        if name == "sequential":
            stages.append(
                _sequential_estimate(config, analyses, per_analysis, rates, concurrency, finished)
            )
            continue
        left = int(max(0, units - finished.get(name, 0)))
        calls = calls * left / units if units else calls
        unit_s = rates.unit_seconds.get(_UNIT_KIND.get(name, "task"))
        seconds = left * unit_s if unit_s is not None else calls * rates.seconds_per_call
        stages.append(
            StageEstimate(
                stage=name,
                units=left,
                calls=math.ceil(calls),
                tokens=math.ceil(calls * rates.tokens_per_call),
                minutes=seconds / max(1, min(width, left or 1)) / 60,
            )
        )
    return Estimate(stages=stages, rates=rates, left=bool(finished))


def _sequential_estimate(
    config: EvolveConfig,
    analyses: int,
    per_analysis: float,
    rates: Rates,
    concurrency: int,
    finished: Mapping[str, float],
) -> StageEstimate:
    """The ``sequential`` stage's row: ceil(analyses / B) steps one after another, each its
    batch's analyses at once (up to ``parallel``) and then one merge (none for a batch of
    one; under the ``git`` strategy about half, as for the parallel tree)."""
    batch = config.seq_batch
    sizes = [min(batch, analyses - start) for start in range(0, analyses, batch)]
    done = finished.get("sequential", 0)
    left = sizes[int(min(done, len(sizes))) :]
    merged = sum(size >= 2 for size in left)
    merge_calls = merged if config.merge_strategy == "llm" else math.ceil(merged / 2)
    calls = sum(left) * per_analysis + merge_calls
    width = max(1, concurrency)
    analysis_s = rates.unit_seconds.get("analysis", per_analysis * rates.seconds_per_call)
    merge_s = rates.unit_seconds.get("merge", rates.seconds_per_call)
    seconds = sum(math.ceil(size / width) * analysis_s + merge_s * (size >= 2) for size in left)
    return StageEstimate(
        stage="sequential",
        units=len(left),
        calls=math.ceil(calls),
        tokens=math.ceil(calls * rates.tokens_per_call),
        minutes=seconds / 60,
    )


# ---------------------------------------------------------------------------------------------
# Lock
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def evolve_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.evolve.lock`` (flock) for the evolution; a second ``evolve`` on the
    same run gets a clear :class:`EvolveError` at once. The kernel drops the lock when the
    holder dies, so a killed run never leaves a stale lock behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _running_error(run_dir, fd)
        os.close(fd)
        raise error from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def check_not_running(run_dir: Path) -> None:
    """Refuse at once, as :func:`evolve_lock` would, when another process evolves the run
    (before a resume prints its estimate); takes and drops the lock, writes nothing."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise _running_error(run_dir, fd) from None
    finally:
        os.close(fd)


def dead_end(run_dir: Path, analysts: str) -> str | None:
    """Why a stopped run can only end as it did when resumed, or None: its rollout left the
    analysts nothing to learn from, or its analyses all finished and none passed the quality
    gate. ``analysts`` is the run's ``--analysts``."""
    from toolkit.analysts.stage import failed_on_model_error
    from toolkit.runs import ANALYSES_FILE, read_manifest

    stats = _stored_stats(run_dir)
    if stats["rollout"].status == "failed":
        manifest = read_manifest(run_dir)
        rollout = manifest.stages.get("rollout") if manifest else None
        counts = rollout.counts if rollout and rollout.status == "done" else {}
        if counts and not counts.get("errors"):
            why = nothing_to_learn(analysts, counts["tasks"], counts["passed"])
            if why:
                return f"stopped after its rollout, and a resume ends the same way: {why}"
    if stats["sequential"].status == "failed":
        manifest = read_manifest(run_dir)
        chain = manifest.stages.get("consolidate") if manifest else None
        counts = chain.counts if chain else {}
        finished = counts.get("steps") and counts.get("steps_done") == counts["steps"]
        if finished and not counts.get("kept"):
            return (
                f"stopped after its sequential consolidation: none of its "
                f"{counts.get('analyses', 0)} analyses in {counts['steps']} steps passed the "
                "quality gate, and resuming redoes no finished step"
            )
    if stats["analyse"].status != "failed":
        return None
    records = read_jsonl_dicts(run_dir / ANALYSES_FILE)
    if any(failed_on_model_error(r) for r in records):
        return None  # the resume analyses those again (the author's server was down)
    if records and not any(r.get("status") == "kept" for r in records):
        return (
            f"stopped after analyse: none of its {len(records)} analyses passed the quality "
            "gate, and resuming redoes none of them"
        )
    return None


def check_resumable(config: EvolveConfig) -> None:
    """Refuse a resume that can only end as the run did (:func:`dead_end`; the estimate
    promised calls the run would never make): :class:`NothingLearned`, exit 5 as the run's
    own end, so a CI job that resumes reads it as the run did. Refuse one whose agent work
    left would run with another agent harness (:func:`harness_change`): EvolveError."""
    why = dead_end(config.run_dir, config.analysts)
    if why:
        raise NothingLearned(
            f"run {config.run_id!r} {why}. Start a new run with another --run-id"
            + _refs_go(config.run_id)
        )
    changed = harness_change(config)
    if changed:
        raise EvolveError(changed)


#: The stages in which the agent runs tasks (their trajectories are matched by agent fingerprint).
AGENT_STAGES = ("rollout", "eval-s0", "eval-result", "eval-none", "eval-memory")


def harness_change(config: EvolveConfig) -> str | None:
    """Why resuming ``config``'s run would mix two agents, or None.

    A trajectory's id names the agent's fingerprint (its prompts, rules and limits), so a
    toolkit whose agent changed since the run started finds none of the run's finished
    tasks: a resume ran them again with the new agent (a finished run's summary re-evaluated
    S0 in silence), and S0 and S* would be compared across two harnesses. Checked while
    agent stages are left; the fingerprint is the one the run's rollout recorded.
    """
    from toolkit.agent import AgentConfig, agent_fingerprint
    from toolkit.runs import read_manifest

    manifest = read_manifest(config.run_dir)
    rollout = manifest.stages.get("rollout") if manifest else None
    recorded = (rollout.config or {}).get("agent_fingerprint") if rollout else None
    if not recorded:
        return None
    stats = _stored_stats(config.run_dir)
    active = active_stages(config)
    left = [s for s in AGENT_STAGES if s in active and stats[s].status != "done"]
    if not left:
        return None
    agent = AgentConfig(protocol=config.protocol).model_copy(update={"delivery": config.delivery})
    now = agent_fingerprint(agent)
    if now == recorded:
        return None
    version = manifest.toolkit_version if manifest else "?"
    return (
        f"run {config.run_id!r} was started by another agent harness (fingerprint "
        f"{recorded}, recorded by its rollout; this toolkit's is {now}): the agent's prompts "
        f"or rules changed since, so the tasks it finished would not be found and "
        f"{', '.join(left)} would run with another agent, comparing S0 and S* across two "
        f"harnesses. Resume it with the toolkit that started it (version "
        f"{version}), or start a new run (--reuse {quote(str(config.run_dir))} copies the "
        "tasks that still match)"
    )


def no_result_reason(run_dir: Path) -> str:
    """What to do about a run folder with no result (S*), as ``evolve --resume`` would judge
    it: start a new run when resuming cannot make one (:func:`dead_end`), else finish it."""
    with contextlib.suppress(EvolveError):  # a damaged stored config: say what is known
        config = load_config(run_dir)
        if config is not None:
            why = dead_end(run_dir, config.analysts)
            if why:
                return f"it {why}. Start a new run with another --run-id"
            return (
                f"finish the evolution first (trace2skill evolve --resume --run-id "
                f"{config.run_id} --runs-dir {quote(str(run_dir.parent))})"
            )
    return "finish the evolution first"


def _running_error(run_dir: Path, fd: int) -> EvolveError:
    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    return EvolveError(
        f"run {run_dir.name!r} is already being evolved ({holder}); wait for it to "
        "finish, or stop it and resume with --resume"
    )


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


class StageStats(BaseModel):
    """What one stage took, summed over every evolve call that worked on it."""

    status: Literal["pending", "running", "done", "interrupted", "failed"] = "pending"
    wall_s: float = 0.0
    calls: int = Field(0, description="Model calls (not counting response-cache hits).")
    cached: int = Field(0, description="Calls answered from the response cache.")
    tokens_in: int = Field(0, description="Prompt tokens of the calls that reported them.")
    tokens_out: int = Field(0, description="Completion tokens of the calls that reported them.")
    tokens_unreported: int = Field(
        0,
        description="Calls whose provider reported no token counts: left out of tokens_in "
        "and tokens_out rather than counted as 0.",
    )
    cost_usd: float = Field(0.0, description="Cost in USD of the calls that were priced.")
    cost_unpriced: int = Field(
        0,
        description="Calls whose cost is unknown (a model litellm has no price for, no usage "
        "reported): left out of cost_usd rather than counted as $0.",
    )
    units: int | None = Field(None, description="Units of work of the stage, when it has some.")
    calls_log_offset: int | None = Field(
        None, description="Bytes of llm_calls.jsonl counted in these figures when last saved."
    )
    saved_at: float | None = Field(None, description="When these figures were last saved.")


class Score(BaseModel):
    """A pass rate with its bootstrap 95% CI (Wilson's when every task passed or every task
    failed: :func:`toolkit.stats.pass_rate`), drawn with the run's seed; None at n = 0."""

    n: int
    passed: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None


class EditSupport(BaseModel):
    """An edit of the final patch with the number of leaf patches behind it."""

    id: str
    op: str
    file: str
    target_section: str | None
    support: int
    sources: list[str]
    text: str = Field("", description="The edit's first line of text, shortened.")
    step: int | None = Field(None, description="Sequential: the step that made the edit.")


class PairedScore(BaseModel):
    """A paired difference of pass rates (B - A) with its bootstrap 95% CI."""

    n: int
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


def _paired(comparison: Comparison) -> PairedScore:
    p = comparison.paired
    return PairedScore(
        n=p.n,
        difference=p.difference,
        ci_low=p.ci.low if p.difference is not None else None,
        ci_high=p.ci.high if p.difference is not None else None,
        p_value=p.p_value,
    )


class EvolveSummary(BaseModel):
    """``runs/<run>/summary.json``: what the evolution did and what it bought."""

    schema_version: int = EVOLVE_SCHEMA_VERSION
    run_id: str
    suite: str
    model: str
    author_model: str
    skill: str = Field(description="The skill folder, repository-relative.")
    created: bool = Field(False, description="Creation: S0 is the author model's draft.")
    base_commit: str
    result_commit: str | None
    result_branch: str
    evolve: Score = Field(description="S0 on the evolve split (the rollouts).")
    analyses: dict[str, int] = Field(description="total, kept, dropped.")
    dropped_reasons: dict[str, int] = Field(description="Why analyses were dropped, counted.")
    merges: dict[str, int] = Field(
        description="Merge records by status, and levels (parallel) or steps (sequential)."
    )
    final_patch_id: str | None
    consolidation: str = Field(
        "parallel",
        description="How S* was made: parallel (B, L_max) or sequential (Seq-B, steps), and "
        "the merge strategy.",
    )
    top_edits: list[EditSupport] = Field(description="Edits of S* by support, highest first.")
    s0: Score
    result: Score
    no_skill: Score | None = Field(None, description="No skill on the test tasks, if asked.")
    s0_vs_no_skill: PairedScore | None = Field(
        None, description="Paired S0 - no skill on the test tasks, if the baseline ran."
    )
    memory: Score | None = Field(
        None, description="S0 + the retrieval memory (top-1 BM25) on the test tasks, if asked."
    )
    memory_items: int | None = Field(None, description="Items in the run's memory bank.")
    memory_vs_s0: PairedScore | None = Field(
        None, description="Paired (S0 + memory) - S0, if the memory baseline ran."
    )
    result_vs_memory: PairedScore | None = Field(
        None, description="Paired S* - (S0 + memory), if the memory baseline ran."
    )
    difference: float | None = Field(description="Paired S* - S0 pass rate.")
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    mde: float | None = Field(description="Minimum detectable paired difference at this n.")
    gained: list[str] = Field(description="Test tasks S0 failed and S* passed.")
    lost: list[str] = Field(description="Test tasks S0 passed and S* failed.")
    stages: dict[str, StageStats]


def _score(result: EvalResult) -> Score:
    rate = result.summary.pass_rate
    return Score(
        n=result.n,
        passed=result.summary.passed,
        rate=rate.rate,
        ci_low=rate.ci.low if rate.rate is not None else None,
        ci_high=rate.ci.high if rate.rate is not None else None,
    )


def flips(s0: EvalResult, result: EvalResult) -> tuple[list[str], list[str]]:
    """Tasks (paired by task id and seed) that S* gained and lost against S0."""
    before = {(r.task_id, r.seed): r.passed for r in s0.records}
    gained, lost = [], []
    for record in result.records:
        was = before.get((record.task_id, record.seed))
        if was is False and record.passed:
            gained.append(record.task_id)
        elif was is True and not record.passed:
            lost.append(record.task_id)
    return gained, lost


def _first_line(text: str, width: int = 60) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def top_edits(
    run_dir: Path, patch_id: str | None, limit: int = 10, *, sequential: bool = False
) -> list[EditSupport]:
    """The final patch's edits, highest support first: op and place from
    ``patches/<id>.json``, leaf sources and support from the merge that made it
    (``merges.jsonl``); a final patch that is a leaf has support 1 per edit. ``sequential``:
    the edits every step of a sequential consolidation merged (there is no final patch)."""
    merges = read_jsonl_dicts(run_dir / "merges.jsonl")
    if sequential:
        made = [m for m in merges if m.get("step") and m.get("commit") and m.get("patch_id")]
        edits = [e for m in made for e in _patch_edits(run_dir, m["patch_id"], m)]
        return sorted(edits, key=lambda e: (-e.support, e.step or 0, e.id))[:limit]
    if patch_id is None:
        return []
    merge = next((m for m in reversed(merges) if m.get("patch_id") == patch_id), None)
    edits = _patch_edits(run_dir, patch_id, merge)
    return sorted(edits, key=lambda e: (-e.support, e.id))[:limit]


def _patch_edits(run_dir: Path, patch_id: str, merge: dict[str, Any] | None) -> list[EditSupport]:
    """The edits of ``patches/<patch_id>.json`` with the support ``merge`` (its merges.jsonl
    line) gives them; none when the file is missing."""
    from toolkit.patch import load_patch

    path = run_dir / "patches" / f"{patch_id}.json"
    if not path.exists():
        return []
    patch = load_patch(path)
    provenance = {e.get("id"): e for e in (merge or {}).get("edits") or []}
    edits = []
    for edit in patch.edits:
        known = provenance.get(edit.id, {})
        sources = list(known.get("sources") or patch.sources or [])
        edits.append(
            EditSupport(
                id=edit.id or "",
                op=str(edit.op),
                file=edit.file,
                target_section=edit.target_section,
                support=int(known.get("support") or len(sources) or 1),
                text=_first_line(edit.content or edit.old_text or ""),
                sources=sources,
                step=(merge or {}).get("step"),
            )
        )
    return edits


# ---------------------------------------------------------------------------------------------
# The orchestration
# ---------------------------------------------------------------------------------------------


def open_suite(config: EvolveConfig) -> Suite:
    """The suite ``config`` names, reading its data."""
    from toolkit.tasks import get_suite

    if config.suite == "jsonl":
        options: dict[str, Any] = {"path": config.data}
        options.update({"scoring": config.scoring} if config.scoring else {})
        options.update({"tolerance": config.tolerance} if config.tolerance is not None else {})
        return get_suite("jsonl", **options)
    return get_suite(config.suite, **({"data_dir": config.data} if config.data else {}))


#: The stages that call the author model (the analysts, the merge operator).
_AUTHOR_STAGES: tuple[str, ...] = ("analyse", "consolidate", "sequential")


def _author_calls_left(config: EvolveConfig, stats: Mapping[str, StageStats]) -> bool:
    """Whether a stage of ``config`` that calls the author model (:data:`_AUTHOR_STAGES`)
    has work left."""
    active = active_stages(config)
    return any(stats[name].status != "done" for name in _AUTHOR_STAGES if name in active)


def _author_server(config: EvolveConfig) -> str | None:
    """The server ``config.author_api_base`` names (None: the provider's own endpoint).

    Raises:
        EvolveError: its URL had a password, which the run did not store.
    """
    from toolkit.llm.config import PROVIDER_ENDPOINT, reusable_api_base

    if config.author_api_base in (None, PROVIDER_ENDPOINT):
        return None
    try:
        return reusable_api_base(config.author_api_base)
    except LLMError:
        raise EvolveError(
            f"the run's author model used the server {config.author_api_base}, "
            "whose password was not stored: give --author-api-base with it again"
        ) from None


def check_author_server(config: EvolveConfig) -> None:
    """Refuse a resume, before its estimate, that must call the author model on a server it
    cannot call: the URL's password was not stored. Asked only while analyse or consolidate
    has work left (a run stopped at an evaluation was refused though no author call was).

    Raises:
        EvolveError: the password is needed; ``--author-api-base`` gives it again.
    """
    if config.author_api_base is not None and _author_calls_left(
        config, _stored_stats(config.run_dir)
    ):
        _author_server(config)


class _Run:
    """One evolve call's state: config, repository, meter, per-stage figures."""

    def __init__(
        self,
        config: EvolveConfig,
        llm_config: LLMConfig,
        meter: Meter,
        stats: dict[str, StageStats],
        progress: bool,
        echo: Callable[[str], None],
        reuse: Sequence[Path] = (),
    ) -> None:
        from toolkit.repo import SkillRepo
        from toolkit.rollout import default_concurrency

        self.config = config
        self.run_dir = config.run_dir
        self.model = config.model or llm_config.model
        self.llm = llm_config.model_copy(
            update={"model": self.model, "calls_log": self.run_dir / CALLS_FILE}
        )
        self.author_model = config.author_model or self.model
        # The analysts and the merge operator call the author model on its own server. With
        # both stages done no author call is left (they are skipped), so a server that cannot
        # be called (its password was not stored) is not asked for: the agent's stands in.
        self.author_llm = self.llm
        if config.author_api_base is not None and _author_calls_left(config, stats):
            self.author_llm = self.llm.model_copy(update={"api_base": _author_server(config)})
        self.meter = meter
        self.stats = stats
        self.progress = progress
        self.echo = echo
        self.reuse = tuple(reuse)
        self.stage = ""
        self.executor = BudgetExecutor(meter, lambda: self.stage)
        self.concurrency = config.parallel or default_concurrency(self.model)
        self.repo: SkillRepo = SkillRepo.open(_repo_path(config))
        self.skill_path = self.repo.relpath(config.skill)
        self.base_ref = f"t2s/{config.run_id}/base"
        self.result_ref = f"t2s/{config.run_id}/result"
        self.values: dict[str, Any] = {}

    def suite(self) -> Suite:
        return open_suite(self.config)

    def skill_at(self, ref: str) -> Skill:
        return self.repo.load_skill(ref, self.skill_path)

    def agent_config(self) -> Any:
        from toolkit.agent import AgentConfig

        return AgentConfig(protocol=self.config.protocol)


def _record(run: _Run, status: str, error: str | None = None) -> None:
    """Write the evolve stage record: config and per-stage figures."""
    from toolkit.runs import update_stage

    update_stage(
        run.run_dir,
        EVOLVE_STAGE,
        status=status,
        error=error,
        config=_recorded(run.config),
        counts={
            "stages": {k: v.model_dump(mode="json") for k, v in run.stats.items()},
            "models": model_files(run.model, run.author_model),
        },
        **({"ended_at": _now()} if status != "running" else {"ended_at": None}),
    )


def _recorded(config: EvolveConfig) -> dict[str, Any]:
    """The config as the manifest keeps it: a password in the author's server URL is not
    stored (the agent's ``api_base`` is masked before it reaches the config)."""
    from toolkit.llm.config import PROVIDER_ENDPOINT, stored_api_base

    data = config.model_dump(mode="json")
    if config.author_api_base not in (None, PROVIDER_ENDPOINT):
        data["author_api_base"] = stored_api_base(config.author_api_base)
    return data


def model_files(*models: str) -> dict[str, dict[str, str]]:
    """The weights behind each embedded model string (tier, file, sha256), so a run names
    exactly what produced it; hosted models are named by their string alone."""
    from toolkit.llm.model_store import tier_for_model

    out = {}
    for model in dict.fromkeys(models):
        tier = tier_for_model(model)
        if tier is not None:
            out[model] = {"tier": tier.name, "file": tier.filename, "sha256": tier.sha256}
    return out


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _repo_path(config: EvolveConfig) -> Path:
    """Where the skill's repository is found: the folder, or for Creation (a folder that
    is not there) its nearest existing parent."""
    from toolkit.draft import nearest_existing

    return nearest_existing(config.skill) if config.create else config.skill


def _stage_base(run: _Run) -> None:
    from toolkit.runs import run_epoch

    if run.config.create:  # Creation: S0 is the author model's draft, never drafted twice
        from toolkit.draft import create_base

        cfg = run.config
        create_base(
            run.repo,
            cfg.run_id,
            cfg.skill,
            run.run_dir,
            run.suite(),
            llm_config=run.author_llm,
            model=run.author_model,
            split=cfg.evolve_split,
            examples=cfg.draft_examples,
            seed=cfg.seed,
            limit=cfg.evolve_limit,
            timestamp=run_epoch(run.run_dir),
        )
        run.stats["base"].units = 1
        return
    # Refused when the run's refs exist already (another run with this id) or the skill
    # folder has uncommitted changes without allow_dirty.
    run.repo.snapshot_base(
        run.config.run_id,
        run.config.skill,
        timestamp=run_epoch(run.run_dir),
        allow_dirty=run.config.allow_dirty,
    )


def _stage_rollout(run: _Run) -> None:
    from toolkit.rollout import run_rollouts

    cfg = run.config
    summary = run_rollouts(
        run.suite(),
        cfg.evolve_split,
        run.skill_at(run.base_ref),
        run.model,
        run_dir=run.run_dir,
        seed=cfg.seed,
        concurrency=run.concurrency,
        limit=cfg.evolve_limit,
        delivery=cfg.delivery,
        resume=True,
        executor=run.executor,
        progress=run.progress,
        agent_config=run.agent_config(),
        llm_config=run.llm,
        reuse=run.reuse,
    )
    run.stats["rollout"].units = summary.tasks
    why = nothing_to_learn(cfg.analysts, summary.tasks, summary.passed)
    if why:
        raise NothingLearned(f"{why}. Start a new run with another --run-id{_refs_go(cfg.run_id)}")


def nothing_to_learn(analysts: str, tasks: int, passed: int) -> str | None:
    """Why the chosen analysts have no trajectory to analyse, or None."""
    if analysts == "error" and passed == tasks:
        return (
            f"all {tasks} evolve tasks passed: the error analysts (+Error) have nothing to "
            "learn from; use --analysts success or combined, or a harder split"
        )
    if analysts == "success" and passed == 0:
        return (
            f"none of the {tasks} evolve tasks passed: the success analysts (+Success) have "
            "nothing to learn from; use --analysts error or combined"
        )
    return None


def _refs_go(run_id: str) -> str:
    return f" (this run's refs go with: trace2skill refs delete {run_id} --yes)"


def analyst_choice(config: EvolveConfig) -> str:
    """The analysts stage's choice for ``config`` (``error``, ``error-single``, ``success``
    or ``combined``).

    Raises:
        EvolveError: ``combined`` with the single-call error analyst (not a paper setting).
    """
    if config.analysts == "error":
        return "error" if config.error_analyst == "agentic" else "error-single"
    if config.analysts == "combined" and config.error_analyst == "single":
        raise EvolveError(
            "--analysts combined uses the agentic error analyst; drop --error-analyst single"
        )
    return config.analysts


def _analyse_config(run: _Run) -> AnalyseConfig:
    """The analysts' settings of ``run``."""
    from toolkit.analysts import AnalyseConfig

    cfg = run.config
    return AnalyseConfig(
        analyst=analyst_choice(cfg),  # type: ignore[arg-type]
        model=run.author_model,
        seed=cfg.seed,
        concurrency=run.concurrency,
        skill_path=str(run.repo.root / run.skill_path),
        repo=str(run.repo.root),
        run_id=cfg.run_id,
    )


def _stage_analyse(run: _Run) -> None:
    from toolkit.analysts import run_analyses

    summary = run_analyses(
        run.run_dir,
        _analyse_config(run),
        resume=True,  # analyses already in analyses.jsonl are kept, never redone
        progress=run.progress,
        llm_config=run.author_llm,
        executor=run.executor,
        suite=run.suite(),
    )
    run.stats["analyse"].units = summary.trajectories
    if summary.kept == 0:
        raise _nothing_kept(run, summary.dropped, summary.reasons)


def _nothing_kept(run: _Run, dropped: int, reasons: Mapping[str, int]) -> NothingLearned:
    """The stop of a run none of whose analyses passed the quality gate."""
    cfg = run.config
    counted = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
    levers = ["a stronger --author-model", "more evolve tasks"]
    if cfg.analysts == "error" and cfg.error_analyst != "single":
        levers.append("--error-analyst single")  # combined refuses it, success ignores it
    return NothingLearned(
        f"no analysis passed the quality gate ({dropped} dropped: {counted}); "
        f"nothing to consolidate. See {run.run_dir}/analyses.jsonl; a new run (another "
        f"--run-id) with {', '.join(levers[:-1])} or {levers[-1]} may help (this run's "
        f"refs go with: trace2skill refs delete {cfg.run_id} --yes)"
    )


def _stage_sequential(run: _Run) -> None:
    # Each step's analyses go through the budget executor; the budget is also checked before
    # each step (its merge runs inside the stage, as the parallel merges do).
    from toolkit.consolidate.sequential import SequentialConfig, run_sequential

    cfg = run.config

    def before_step(step: int) -> None:
        why = run.meter.exceeded()
        if why is not None:
            raise BudgetExceeded(
                f"budget spent ({why}) during stage sequential, before step {step}",
                "sequential",
            )

    summary = run_sequential(
        run.run_dir,
        _analyse_config(run),
        SequentialConfig(
            batch=cfg.seq_batch,
            strategy=cfg.merge_strategy,
            seed=cfg.seed,
            progress=run.progress,
        ),
        llm_config=run.author_llm,
        executor=run.executor,
        suite=run.suite(),
        before_step=before_step,
        echo=run.echo,
    )
    run.stats["sequential"].units = summary.steps
    if summary.result_commit is None:
        raise _nothing_kept(run, summary.dropped, summary.reasons)


def _stage_consolidate(run: _Run) -> None:
    # The merges of one level run concurrently inside the stage, without the executor, so
    # the budget is checked before the stage, not between its merges.
    from toolkit.consolidate import ConsolidateConfig, run_consolidation

    cfg = run.config
    summary = run_consolidation(
        run.run_dir,
        ConsolidateConfig(
            merge_batch=cfg.merge_batch,
            max_levels=cfg.max_levels,
            strategy=cfg.merge_strategy,
            author_model=run.author_model,
            repo=run.repo.root,
            skill_path=run.skill_path,
            run=cfg.run_id,
            resume=True,  # merges already written are reused, never redone
            progress=run.progress,
        ),
        llm_config=run.author_llm,
    )
    run.stats["consolidate"].units = summary.groups


def _evaluate(run: _Run, ref: str | None, memory: Memory | None = None) -> EvalResult:
    """Evaluate the skill at ``ref`` (None: no skill) on the test split (with ``memory``:
    plus each task's retrieved lessons)."""
    from toolkit.evaluate import evaluate

    cfg = run.config
    return evaluate(
        run.skill_at(ref) if ref is not None else None,
        run.suite(),
        cfg.test_split,
        run.model,
        run_dir=run.run_dir,
        seed=cfg.seed,
        limit=cfg.test_limit,
        delivery=cfg.delivery if ref is not None else None,
        concurrency=run.concurrency,
        progress=run.progress,
        llm_config=run.llm,
        agent_config=run.agent_config(),
        executor=run.executor,
        reuse=run.reuse,
        memory=memory,
    )


def _stage_eval_none(run: _Run) -> None:
    result = _evaluate(run, None)
    run.stats["eval-none"].units = result.n
    run.values["none"] = result


def _run_memory(run: _Run, *, build: bool) -> Memory:
    """The run's memory at the evolve defaults (top-1, BM25): its bank built from the
    analyses (``build``, written to memory.jsonl; the same bytes each time) or read back."""
    from toolkit.memory import Memory, build_bank, read_bank

    return Memory(bank=build_bank(run.run_dir) if build else read_bank(run.run_dir))


def _stage_eval_memory(run: _Run) -> None:
    memory = _run_memory(run, build=True)
    result = _evaluate(run, run.base_ref, memory)
    run.stats["eval-memory"].units = result.n
    run.values["memory"] = result
    run.values["memory_items"] = len(memory.bank.items)


def _stage_eval_s0(run: _Run) -> None:
    result = _evaluate(run, run.base_ref)
    run.stats["eval-s0"].units = result.n
    run.values["s0"] = result


def _stage_eval_result(run: _Run) -> None:
    if run.result_ref not in run.repo.run_refs(run.config.run_id):
        bundle = run.run_dir / REFS_BUNDLE
        if run.stats[result_stage(run.config)].status == "done" and bundle.is_file():
            raise EvolveError(
                f"{run.result_ref} is not in {run.repo.root}, though the consolidation "
                f"finished (was it deleted?); restore the run's refs from its bundle: "
                f"trace2skill bundle import {quote(str(bundle))} --force"
            )
        raise EvolveError(f"{run.result_ref} does not exist: the consolidation did not finish")
    result = _evaluate(run, run.result_ref)
    run.stats["eval-result"].units = result.n
    run.values["result"] = result


def _stage_summary(run: _Run) -> None:
    from toolkit.evaluate import pair_results

    stages = [
        ("s0", "eval-s0", _stage_eval_s0, run.base_ref),
        ("result", "eval-result", _stage_eval_result, run.result_ref),
    ]
    if run.config.no_skill_baseline:
        stages.append(("none", "eval-none", _stage_eval_none, None))
    for name, stage_name, stage, ref in stages:
        if name in run.values:
            continue
        # Resumed after the evaluations: read back what they stored, never run again.
        stored = _stored_eval(run, ref) if run.stats[stage_name].status == "done" else None
        if stored is not None:
            run.values[name] = stored
        else:
            stage(run)
    if run.config.memory_baseline and "memory" not in run.values:
        stored = None
        if run.stats["eval-memory"].status == "done":
            with contextlib.suppress(ToolkitError):  # no readable bank: the stage runs
                memory = _run_memory(run, build=False)
                stored = _stored_eval(run, run.base_ref, memory)
                run.values["memory_items"] = len(memory.bank.items)
        if stored is not None:
            run.values["memory"] = stored
        else:
            _stage_eval_memory(run)
    run.values["summary"] = build_summary(run, pair_results(run.values["s0"], run.values["result"]))
    _write_summary(run)


def _stored_eval(run: _Run, ref: str | None, memory: Memory | None = None) -> EvalResult | None:
    """The finished evaluation of the skill at ``ref`` (None: no skill; with ``memory``: its
    memory condition) as its eval file holds it, or None when the file cannot give it (then
    the stage runs, finding its tasks done)."""
    from toolkit.evaluate import EvalError, eval_path, load_eval
    from toolkit.trajectory import NO_SKILL_COMMIT, skill_commit

    cfg = run.config
    commit = skill_commit(run.skill_at(ref)) if ref is not None else NO_SKILL_COMMIT
    if memory is not None:
        commit = memory.condition(commit)
    try:
        return load_eval(
            eval_path(run.run_dir, commit, cfg.test_split),
            suite=cfg.suite,
            model=run.model,
            seed=cfg.seed,
            delivery=cfg.delivery if ref is not None else "none",
        )
    except EvalError:  # ambiguous too (another protocol evaluated into the folder)
        return None


def _write_summary(run: _Run) -> EvolveSummary:
    """Write ``summary.json`` with the stage figures as they stand now."""
    summary = run.values["summary"].model_copy(update={"stages": _active_stats(run)})
    text = json.dumps(summary.model_dump(mode="json"), indent=2) + "\n"
    write_atomic(run.run_dir / SUMMARY_FILE, text, prefix=".summary-", suffix="")
    return summary


def build_summary(run: _Run, comparison: Comparison) -> EvolveSummary:
    """The :class:`EvolveSummary` of a run whose evaluations are done."""
    from toolkit.evaluate import pair_results
    from toolkit.runs import read_manifest
    from toolkit.stats import pass_rate

    s0, result = run.values["s0"], run.values["result"]
    none, memory = run.values.get("none"), run.values.get("memory")
    refs = run.repo.run_refs(run.config.run_id)
    analyses = read_jsonl_dicts(run.run_dir / "analyses.jsonl")
    merges = read_jsonl_dicts(run.run_dir / "merges.jsonl")
    manifest = read_manifest(run.run_dir)
    consolidate = manifest.stages.get("consolidate") if manifest else None
    final_patch = (consolidate.counts.get("final_patch_id") if consolidate else None) or None
    rollout = manifest.stages.get("rollout") if manifest else None
    counts = rollout.counts if rollout else {}
    n_evolve, passed_evolve = int(counts.get("tasks", 0)), int(counts.get("passed", 0))
    # The CI from the counts (the bootstrap is a binomial draw: stats module docstring), with
    # the run's seed as every other CI of the run: a paper table's evolve-split column had none.
    evolve_rate = pass_rate(
        [True] * passed_evolve + [False] * (n_evolve - passed_evolve), seed=run.config.seed
    )
    p = comparison.paired
    gained, lost = flips(s0, result)
    merge_status = Counter(str(m.get("status")) for m in merges)
    cfg = run.config
    sequential = cfg.consolidation == "sequential"
    steps = [m for m in merges if m.get("step")]
    if sequential:
        changed = sum(bool(m.get("commit")) for m in steps)
        how = (
            f"sequential, Seq-B={cfg.seq_batch}: {len(steps)} steps, {changed} changed the "
            f"skill (t2s/{cfg.run_id}/seq/1..{len(steps)})"
        )
        shape = {"steps": len(steps)}
    else:
        how = f"parallel, B={cfg.merge_batch}, L_max={cfg.max_levels}"
        shape = {"levels": max((int(m.get("level") or 0) for m in merges), default=0)}
    return EvolveSummary(
        run_id=run.config.run_id,
        suite=run.config.suite,
        model=run.model,
        author_model=run.author_model,
        skill=run.skill_path,
        created=run.config.create,
        base_commit=refs.get(run.base_ref, ""),
        result_commit=refs.get(run.result_ref),
        result_branch=run.result_ref,
        evolve=Score(
            n=n_evolve,
            passed=passed_evolve,
            rate=evolve_rate.rate,
            ci_low=evolve_rate.ci.low if n_evolve else None,
            ci_high=evolve_rate.ci.high if n_evolve else None,
        ),
        analyses={
            "total": len(analyses),
            "kept": sum(a.get("status") == "kept" for a in analyses),
            "dropped": sum(a.get("status") == "dropped" for a in analyses),
        },
        dropped_reasons=dict(
            Counter(str(a.get("reason")) for a in analyses if a.get("status") == "dropped")
        ),
        merges={**dict(merge_status), **shape},
        final_patch_id=final_patch,
        consolidation=f"{how}; {cfg.merge_strategy} merges",
        top_edits=top_edits(run.run_dir, final_patch, sequential=sequential),
        s0=_score(s0),
        result=_score(result),
        no_skill=_score(none) if none is not None else None,
        s0_vs_no_skill=_paired(pair_results(none, s0)) if none is not None else None,
        memory=_score(memory) if memory is not None else None,
        memory_items=run.values.get("memory_items") if memory is not None else None,
        memory_vs_s0=_paired(pair_results(s0, memory)) if memory is not None else None,
        result_vs_memory=_paired(pair_results(memory, result)) if memory is not None else None,
        difference=p.difference,
        ci_low=p.ci.low if p.difference is not None else None,
        ci_high=p.ci.high if p.difference is not None else None,
        p_value=p.p_value,
        mde=p.mde,
        gained=gained,
        lost=lost,
        stages=_active_stats(run),
    )


def _active_stats(run: _Run) -> dict[str, StageStats]:
    """Copies of the figures of the stages this run has."""
    return {k: run.stats[k].model_copy() for k in active_stages(run.config)}


def _stage_bundle(run: _Run) -> None:
    from toolkit.repo import export_bundle

    export_bundle(run.repo, run.config.run_id, run.run_dir / REFS_BUNDLE)


_STAGE_FUNCS: dict[str, Callable[[_Run], None]] = {
    "base": _stage_base,
    "rollout": _stage_rollout,
    "analyse": _stage_analyse,
    "consolidate": _stage_consolidate,
    "sequential": _stage_sequential,
    "eval-none": _stage_eval_none,
    "eval-memory": _stage_eval_memory,
    "eval-s0": _stage_eval_s0,
    "eval-result": _stage_eval_result,
    "summary": _stage_summary,
    "bundle": _stage_bundle,
}


def locate_skill(config: EvolveConfig) -> EvolveConfig:
    """A stored config whose skill folder is found from here: as given when the run started
    (from this directory: a clone the run folder was copied into), else where it was then.

    Raises:
        EvolveError: neither exists.
    """
    if config.create:  # a new folder, in git only: found where its parent is
        for found in (config.skill, config.skill_dir):
            if found is not None and (found.is_dir() or found.parent.is_dir()):
                return config.model_copy(update={"skill": found})
        if config.skill_dir is not None:  # no parent either: the repository where it was
            return config.model_copy(update={"skill": config.skill_dir})
    if config.skill.is_dir():
        return config
    if config.skill_dir is not None and config.skill_dir.is_dir():
        return config.model_copy(update={"skill": config.skill_dir})
    where = f" nor at {config.skill_dir}" if config.skill_dir else ""
    raise EvolveError(
        f"the run's skill folder {config.skill} is not found from here{where}; resume from "
        "the directory the run started in"
    )


def locate_data(config: EvolveConfig) -> EvolveConfig:
    """A stored config whose data (a jsonl task file, a data folder) is found from here: as
    given when the run started, else where it was then. A resume from another directory
    read ``data/tasks.jsonl`` from there and stopped with "data file not found".

    Raises:
        EvolveError: neither exists.
    """
    if config.data is None or config.data.exists():
        return config
    if config.data_path is not None and config.data_path.exists():
        return config.model_copy(update={"data": config.data_path})
    where = f" nor at {config.data_path}" if config.data_path else ""
    raise EvolveError(
        f"the run's data {config.data} is not found from here{where}; resume from the "
        "directory the run started in, or give it where it is now with --suite "
        f"{config.suite} --data PATH"
    )


def load_config(run_dir: Path) -> EvolveConfig | None:
    """The config stored by an earlier ``evolve`` of ``run_dir``, or None."""
    from toolkit.runs import read_manifest

    manifest = read_manifest(run_dir)
    record = manifest.stages.get(EVOLVE_STAGE) if manifest else None
    if record is None:
        return None
    try:
        return EvolveConfig.model_validate(record.config)
    except ValidationError as exc:
        raise EvolveError(f"{run_dir}: the stored evolve config is invalid: {exc}") from None


def _stored_stats(run_dir: Path) -> dict[str, StageStats]:
    from toolkit.runs import read_manifest

    manifest = read_manifest(run_dir)
    record = manifest.stages.get(EVOLVE_STAGE) if manifest else None
    stored = (record.counts.get("stages") if record else None) or {}
    return {name: StageStats.model_validate(stored.get(name, {})) for name in STAGES}


def finished_units(config: EvolveConfig) -> dict[str, float]:
    """Units of each stage a run has done, read from its files: rollouts, analyses, merges and
    each evaluation's trajectories (``math.inf`` for a stage its figures mark done)."""
    from toolkit.evaluate import eval_trajectories_path
    from toolkit.memory import run_memory_condition
    from toolkit.repo import SkillRepo
    from toolkit.runs import ANALYSES_FILE, MERGES_FILE, TRAJECTORIES_FILE
    from toolkit.trajectory import NO_SKILL_COMMIT, read_trajectories, skill_commit

    run_dir = config.run_dir
    done: dict[str, float] = {
        name: math.inf for name, stats in _stored_stats(run_dir).items() if stats.status == "done"
    }
    if (run_dir / TRAJECTORIES_FILE).exists():
        rollouts = read_trajectories(run_dir / TRAJECTORIES_FILE).records
        done.setdefault("rollout", sum(t.stop_reason != "error" for t in rollouts))
    done.setdefault("analyse", len(read_jsonl_dicts(run_dir / ANALYSES_FILE)))
    merges = read_jsonl_dicts(run_dir / MERGES_FILE)
    done.setdefault("consolidate", len(merges))
    # A step is finished once its merges.jsonl line is written (its ref comes just before).
    done.setdefault("sequential", len({m["step"] for m in merges if m.get("step")}))
    evals = eval_trajectories_path(run_dir)
    if not evals.exists():
        return done
    # A task whose model call failed runs again on the resume, as a rollout's does: not done.
    commits = Counter(
        t.skill_commit
        for t in read_trajectories(evals).records
        if t.split == config.test_split and t.stop_reason != "error"
    )
    repo = SkillRepo.open(_repo_path(config))
    try:
        refs = repo.run_refs(config.run_id)
        for stage, ref in (("eval-s0", "base"), ("eval-result", "result")):
            name = f"t2s/{config.run_id}/{ref}"
            if name in refs:
                commit = skill_commit(repo.load_skill(name, repo.relpath(config.skill)))
                done.setdefault(stage, commits[commit])
                memory = run_memory_condition(run_dir, commit) if ref == "base" else None
                if memory is not None:  # its bank is written when eval-memory starts
                    done.setdefault("eval-memory", commits[memory])
    finally:
        repo.close()
    done.setdefault("eval-none", commits[NO_SKILL_COMMIT])
    return done


def plan(
    config: EvolveConfig,
    llm_config: LLMConfig,
    *,
    resume: bool = False,
    reuse: Sequence[Path] = (),
    notify: bool = True,
) -> Estimate:
    """The up-front estimate of ``config`` (loads the splits' sizes; writes nothing); with
    ``resume``, of the work the run has left, at the rates its own files show; with
    ``reuse`` (and those the run recorded, :func:`reuse_folders`), without the tasks those
    runs finished (see :func:`reusable_tasks`). ``notify``: name recorded --reuse folders
    that are gone (off when :func:`evolve` follows, which names them itself)."""
    from toolkit.rollout import default_concurrency
    from toolkit.tasks.splits import short_split_notice

    suite = open_suite(config)
    sizes = []
    splits = ((config.evolve_split, config.evolve_limit), (config.test_split, config.test_limit))
    for split, limit in splits:
        suite.check_split(split)
        n = len(suite.load(split).tasks)
        if limit and limit > n:
            warnings.warn(short_split_notice(suite, split, limit, n), ToolkitNotice, stacklevel=2)
        sizes.append(min(n, limit) if limit else n)
    model = config.model or llm_config.model
    rates = default_rates(model)
    finished: dict[str, float] = {}
    patches = None
    if resume:
        rates = measured_rates(config.run_dir, rates)
        finished = finished_units(config)
        if finished.get("analyse") == math.inf:
            patches = kept_patches(config.run_dir)
    reuse = reuse_folders(config, reuse, notify=notify)
    reused_tasks = reusable_tasks(config, model, reuse) if reuse else {}
    reused = {stage: len(tasks) for stage, tasks in reused_tasks.items()}
    s0_tasks = [t for stage in ("rollout", "eval-s0") for t in reused_tasks.get(stage, [])]
    if not rates.measured and s0_tasks:  # the run's own figures, once it has them, stand
        rates = reused_rates(s0_tasks, rates)
    for stage, units in reused.items():
        # On a resume the copies already made are counted in both: the larger stands.
        finished[stage] = max(finished.get(stage, 0), units)
    width = config.parallel or default_concurrency(model)
    est = estimate(config, sizes[0], sizes[1], rates, width, finished, patches)
    return est.model_copy(update={"left": resume, "reused": reused})


def reuse_folders(
    config: EvolveConfig, reuse: Sequence[Path] = (), *, notify: bool = True
) -> list[Path]:
    """The --reuse folders of a run: those it recorded (a resume without --reuse still
    reuses them; one that is gone is left out, with a notice unless not ``notify``, its
    tasks not yet copied run again) and those given now, as whole paths, each once."""
    folders: list[Path] = []
    for path in config.reuse:
        if not path.exists():
            if not notify:
                continue
            warnings.warn(
                f"the --reuse folder {path} this run recorded is gone: tasks it held that the "
                "run has not copied yet will run again",
                ToolkitNotice,
                stacklevel=2,
            )
            continue
        folders.append(path)
    for path in reuse:
        whole = path.absolute()
        if whole not in folders:
            folders.append(whole)
    return folders


def reusable_units(config: EvolveConfig, model: str, reuse: Sequence[Path]) -> dict[str, int]:
    """How many tasks of each stage ``reuse`` holds finished (see :func:`reusable_tasks`)."""
    return {stage: len(tasks) for stage, tasks in reusable_tasks(config, model, reuse).items()}


def reusable_tasks(
    config: EvolveConfig, model: str, reuse: Sequence[Path]
) -> dict[str, list[Trajectory]]:
    """Tasks of the rollout, eval-s0 and (with a no-skill baseline) eval-none stages that
    ``reuse`` holds finished, matched by trajectory id as the stages match them (S0 as the
    skill folder holds it now).

    Raises:
        RolloutError: a source that is no run folder, holds no trajectories or read other
            data files (refused here, before the run writes anything, not at its rollout).
    """
    from toolkit.agent import AgentConfig, agent_fingerprint
    from toolkit.rollout import reusable_trajectories
    from toolkit.skill import load_skill
    from toolkit.tasks.splits import make_splits, source_hashes
    from toolkit.trajectory import NO_SKILL_COMMIT, skill_commit, trajectory_id

    suite = open_suite(config)
    have = reusable_trajectories(reuse, source_hashes(suite))
    s0 = _s0_commit(config) if config.create else skill_commit(load_skill(config.skill))
    conditions = [
        ("rollout", config.evolve_split, config.evolve_limit, s0, config.delivery),
        ("eval-s0", config.test_split, config.test_limit, s0, config.delivery),
        ("eval-none", config.test_split, config.test_limit, NO_SKILL_COMMIT, "none"),
    ]
    units = {}
    for stage, split, limit, commit, delivery in conditions:
        if stage not in active_stages(config) or commit is None:  # eval-none: where it runs
            continue
        agent = AgentConfig(protocol=config.protocol).model_copy(update={"delivery": delivery})
        fingerprint = agent_fingerprint(agent)
        tasks = make_splits(suite, {split: limit}, seed=config.seed).splits[split]
        ids = (
            trajectory_id(suite.name, task, commit, model, config.seed, delivery, fingerprint)
            for task in tasks
        )
        units[stage] = [have[i] for i in ids if i in have]
    return units


def _s0_commit(config: EvolveConfig) -> str | None:
    """Creation: the version id of the drafted S0 once its base exists, else None (a new
    run's draft is not made yet, so no other run holds its tasks)."""
    from toolkit.repo import SkillRepo
    from toolkit.trajectory import skill_commit

    repo = SkillRepo.open(_repo_path(config))
    try:
        base = f"t2s/{config.run_id}/base"
        if base not in repo.run_refs(config.run_id):
            return None
        return skill_commit(repo.load_skill(base, repo.relpath(config.skill)))
    finally:
        repo.close()


def kept_patches(run_dir: Path) -> int:
    """Leaf patches a run's analyses kept (what its consolidation merges)."""
    from toolkit.runs import ANALYSES_FILE

    return sum(r.get("status") == "kept" for r in read_jsonl_dicts(run_dir / ANALYSES_FILE))


def evolve(
    config: EvolveConfig,
    *,
    llm_config: LLMConfig | None = None,
    resume: bool = False,
    budget: Budget | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    reuse: Sequence[Path] = (),
) -> EvolveSummary:
    """Run (or resume) an evolution; see the module docstring.

    Args:
        config: the run's settings (with ``resume``, those stored in the run win; see
            :func:`load_config`).
        llm_config: gateway settings (cache, api base); ``config.model`` wins over its model.
        resume: continue the run in ``config.run_dir``; without it an existing run is an
            error.
        budget: most calls, tokens and minutes this call may spend.
        progress: draw each stage's progress bar.
        echo: where stage headers go (default: nowhere).
        reuse: other run folders whose finished tasks of the same condition (the S0 rollouts,
            an evaluation of S0 or of no skill) are copied in instead of run again; recorded
            in the run, so a resume reuses them without naming them again.

    Returns:
        The summary (also in ``runs/<run>/summary.json``).

    Raises:
        EvolveError: bad skill, existing run without resume, missing stage, nothing to
            learn from; BudgetExceeded: the budget ran out (resume to go on); RunningLoopError:
            called from a running event loop (a notebook: ``asyncio.to_thread(evolve, ...)``),
            with nothing written; any stage's ToolkitError.
    """
    from toolkit.llm.config import LLMConfig, reusable_api_base, stored_api_base
    from toolkit.sync import require_no_running_loop

    require_no_running_loop("evolve")  # before the run folder and its base commit are made
    llm_config = llm_config or LLMConfig.from_env()
    say = echo or (lambda _line: None)
    run_dir = config.run_dir
    fresh = not run_dir.exists()
    with evolve_lock(run_dir):
        stored = load_config(run_dir)
        if stored is not None and not resume:
            raise _exists(config, stored)
        if stored is None and _has_run_files(run_dir):
            raise EvolveError(
                f"{run_dir} already holds files of another kind of run; choose another --run-id"
            )
        # A resume runs with the stored settings; a new run records the model it resolved.
        # What a resume may change, as no finished work depends on it: a no-skill or memory
        # baseline is added, and the units run at once follow this call.
        if stored is not None:
            stored = stored.model_copy(
                update={
                    "no_skill_baseline": stored.no_skill_baseline or config.no_skill_baseline,
                    "memory_baseline": stored.memory_baseline or config.memory_baseline,
                    "parallel": config.parallel or stored.parallel,
                    # The author's server as given now (it moved, or its password is
                    # not stored), else as recorded.
                    "author_api_base": config.author_api_base or stored.author_api_base,
                    # Where the run was found now (the stored folder may be relative to the
                    # directory it started in).
                    "runs_dir": config.runs_dir,
                    # Where its data is now (it moved; splits.json's hashes make sure it is
                    # the same data).
                    "data": config.data or stored.data,
                }
            )
        config = (
            locate_data(locate_skill(stored))
            if stored
            else config.model_copy(
                update={
                    "skill_dir": config.skill.absolute(),
                    "reuse": [],  # recorded below, with those given
                    "data_path": config.data.absolute() if config.data else None,
                    "model": config.model or llm_config.model,
                    "api_base": stored_api_base(config.api_base or llm_config.api_base),
                    "no_cache": config.no_cache or not llm_config.cache,
                }
            )
        )
        # A resume calls the run's server (a resume without --api-base went to the provider's
        # public endpoint) and keeps its cache setting, unless this call names a server.
        if llm_config.api_base is None and config.api_base:
            llm_config = llm_config.model_copy(
                update={"api_base": reusable_api_base(config.api_base)}
            )
        if config.no_cache:
            llm_config = llm_config.model_copy(update={"cache": False})
        if stored is not None:
            changed = harness_change(config)
            if changed:
                raise EvolveError(changed)
        reuse = reuse_folders(config, reuse)
        config = config.model_copy(update={"reuse": reuse})
        meter = Meter(run_dir / CALLS_FILE, budget)
        try:
            stats = _stored_stats(run_dir)
            _catch_up(stats, run_dir / CALLS_FILE)
            run = _Run(config, llm_config, meter, stats, progress, say, reuse)
        except BaseException:
            if fresh:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        try:
            if stored is None:
                _start(run, fresh)
            else:
                say(f"resuming run {config.run_id} in {run_dir}")
                _import_refs(run)
            stages = active_stages(config)
            for index, name in enumerate(stages, start=1):
                if run.stats[name].status == "done" and name != "summary":
                    continue
                why = meter.exceeded()
                if why is not None:
                    raise BudgetExceeded(f"budget spent ({why}) before stage {name}", name)
                say(f"[{index}/{len(stages)}] {name}")
                run.stage = name
                _run_stage(run, name)
            _record(run, "done")
            return _write_summary(run)  # with the figures of the stages after the summary
        except BaseException:
            # A stopped run's folder carries its refs, so it resumes elsewhere (a CI
            # artifact): the bundle stage would only write them at the very end.
            with contextlib.suppress(Exception):
                if run.run_dir.is_dir() and run.base_ref in run.repo.run_refs(config.run_id):
                    _stage_bundle(run)
            raise
        finally:
            run.repo.close()


def _import_refs(run: _Run) -> None:
    """On a resume in a repository without the run's refs (the folder came from elsewhere),
    import them from the folder's ``refs.bundle``.

    Raises:
        EvolveError: the refs are missing here and the folder has no bundle.
    """
    from toolkit.repo import import_bundle

    if run.base_ref in run.repo.run_refs(run.config.run_id):
        return
    bundle = run.run_dir / REFS_BUNDLE
    if not bundle.is_file():
        raise EvolveError(
            f"{run.repo.root} has no refs of run {run.config.run_id!r} (t2s/"
            f"{run.config.run_id}/...) and {run.run_dir} has no {REFS_BUNDLE}: resume in the "
            "repository the run was made in"
        )
    import_bundle(run.repo, bundle)
    run.echo(f"imported the run's refs from {bundle}")


def _exists(config: EvolveConfig, stored: EvolveConfig) -> EvolveError:
    """The refusal of a new run on a taken id (``stored``: the run's own config)."""
    why = dead_end(config.run_dir, stored.analysts)
    if why:  # "resume it" would be refused: say what the run is instead
        return EvolveError(
            f"run {config.run_id!r} already exists in {config.runs_dir} and {why}: choose "
            "another --run-id"
        )
    return EvolveError(
        f"run {config.run_id!r} already exists in {config.runs_dir}; resume it with "
        "--resume, or choose another --run-id"
    )


def check_request(config: EvolveConfig) -> None:
    """The checks of a new run that need no model and write nothing (also run by
    ``--estimate``): the run id is free, the skill validates and is committed (unless
    ``allow_dirty``; Creation: its name is valid, its folder new), the analysts fit, the
    suite can pass under the protocol, the splits exist and share no task.

    Raises:
        EvolveError, SkillError, TaskError, RepoError: the first problem, in one line.
    """
    from toolkit.repo import SkillRepo
    from toolkit.skill import require_valid
    from toolkit.tasks.check import empty_split_message

    stored = load_config(config.run_dir)
    if stored is not None:
        check_not_running(config.run_dir)  # "resume it" would be refused while it runs
        raise _exists(config, stored)
    if config.create:
        from toolkit.draft import check_skill_name, folder_name

        check_skill_name(folder_name(config.skill))
    else:
        require_valid(config.skill)
    repo = SkillRepo.open(_repo_path(config))
    try:
        if config.create:  # a new folder: not on disk, not in HEAD
            repo.check_new_folder(config.run_id, config.skill)
        else:
            repo.check_snapshot(config.run_id, config.skill, allow_dirty=config.allow_dirty)
    finally:
        repo.close()
    analyst_choice(config)
    suite = open_suite(config)
    suite.check_protocol(config.protocol)
    for split in (config.evolve_split, config.test_split):
        suite.check_split(split)
    splits = {config.evolve_split, config.test_split}
    if len(splits) == 1 or "all" in splits:
        raise EvolveError(
            f"--evolve-split {config.evolve_split} and --test-split {config.test_split} share "
            "tasks: S* would be scored on the tasks it learned from. Use disjoint splits "
            "(the defaults: --evolve-split train --test-split test)"
        )
    # An empty test split stopped the run at eval-s0, after the rollouts, the analyses and
    # the consolidation had spent their model time.
    loaded = suite.load_all()
    for split in (config.evolve_split, config.test_split):
        if not any(task.split == split for task in loaded.tasks):
            raise EvolveError(empty_split_message(suite, split, loaded))


def _start(run: _Run, fresh: bool) -> None:
    """A new run: check the request, then commit the base; a refused request leaves no run
    folder and no refs behind."""
    try:
        check_request(run.config)
        run.stage = "base"
        run.echo(f"run {run.config.run_id} in {run.run_dir}")
        run.echo(f"[1/{len(active_stages(run.config))}] base")
        _run_stage(run, "base")
    except BaseException:
        if fresh:
            shutil.rmtree(run.run_dir, ignore_errors=True)
        raise


def _catch_up(stats: dict[str, StageStats], calls_path: Path) -> None:
    """Add to a stage killed outright (still recorded as running: SIGKILL, a closed session)
    the model calls logged after its figures were last saved, and the time up to its last
    call: the figures were up to a heartbeat (30 s) behind, and a killed analysis's calls
    were missing from them."""
    for st in stats.values():
        if st.status != "running" or st.calls_log_offset is None:
            continue
        meter = Meter(calls_path)
        meter.offset = min(st.calls_log_offset, meter.offset)
        _add_spent(st, st, meter.read())
        if meter.last_ended_at is not None and st.saved_at is not None:
            st.wall_s += max(0.0, meter.last_ended_at - st.saved_at)
        st.status, st.calls_log_offset = "interrupted", meter.offset


def _add_spent(stats: StageStats, base: StageStats, spent: Spend) -> None:
    """``stats``' model use: ``base``'s plus what was ``spent``."""
    stats.calls = base.calls + spent.calls
    stats.cached = base.cached + spent.cached
    stats.tokens_in = base.tokens_in + spent.tokens_in
    stats.tokens_out = base.tokens_out + spent.tokens_out
    stats.tokens_unreported = base.tokens_unreported + spent.unreported
    stats.cost_usd = base.cost_usd + spent.cost_usd
    stats.cost_unpriced = base.cost_unpriced + spent.unpriced


def _has_run_files(run_dir: Path) -> bool:
    return run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir())


#: Seconds between two saves of a running stage's figures: a run killed outright (SIGKILL, a
#: closed session) keeps the time and calls it spent up to the last save.
HEARTBEAT_S = 30.0


def _run_stage(run: _Run, name: str) -> None:
    """Run one stage, adding its wall time and model use to its figures, whatever happens;
    the figures so far are saved every :data:`HEARTBEAT_S` seconds while it runs."""
    stats = run.stats[name]
    base = stats.model_copy()
    before, t0 = run.meter.read(), time.perf_counter()

    def tally(status: str) -> None:
        stats.status = status  # type: ignore[assignment]
        stats.wall_s = base.wall_s + time.perf_counter() - t0
        _add_spent(stats, base, run.meter.read() - before)
        stats.calls_log_offset, stats.saved_at = run.meter.offset, time.time()

    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                tally("running")
                _record(run, "running")

    stats.status = "running"
    _record(run, "running")
    beat = threading.Thread(target=heartbeat, name=f"evolve-{name}-heartbeat", daemon=True)
    beat.start()
    status, error = "failed", None
    try:
        _STAGE_FUNCS[name](run)
        status = "done"
    except BaseException as exc:
        budget = isinstance(exc, BudgetExceeded) or not isinstance(exc, Exception)
        status = "interrupted" if budget else "failed"
        error = f"{name}: {exc}" if str(exc) else f"{name}: {type(exc).__name__}"
        raise
    finally:
        stop.set()
        beat.join()
        tally(status)
        with contextlib.suppress(Exception):
            _record(run, "running" if status == "done" else status, error)


__all__ = [
    "STAGES",
    "active_stages",
    "check_author_server",
    "check_not_running",
    "check_request",
    "check_resumable",
    "dead_end",
    "Budget",
    "BudgetExceeded",
    "BudgetExecutor",
    "EditSupport",
    "Estimate",
    "EvolveConfig",
    "EvolveError",
    "NOTHING_LEARNED_EXIT",
    "NothingLearned",
    "EvolveSummary",
    "Meter",
    "Rates",
    "PairedScore",
    "Score",
    "Spend",
    "StageEstimate",
    "StageStats",
    "build_summary",
    "default_rates",
    "default_run_id",
    "estimate",
    "evolve",
    "evolve_lock",
    "finished_units",
    "flips",
    "kept_patches",
    "load_config",
    "locate_data",
    "locate_skill",
    "measured_rates",
    "merge_count",
    "no_result_reason",
    "parse_budget",
    "plan",
    "top_edits",
]
