"""What the analyse stage reads and writes: its config, units, records and summary.

One :class:`AnalysisRecord` per analysed trajectory is a line of ``analyses.jsonl`` (fields
fixed by the run-file contract); an :class:`AnalyseConfig` is the stage's settings as the
manifest records them; an :class:`AnalysisUnit` is one unit of work as plain data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ANALYSIS_SCHEMA_VERSION = 2
"""2: ``tokens_in``/``tokens_out`` are null when a call's provider did not report them."""
# Part of every analysis id: bump it when prompts or the protocol change, so a resumed run
# does not reuse analyses written by another analyst version.
ANALYST_VERSION = 1
MAX_REPORT_CHARS = 4000

AnalystKind = Literal["error-agentic", "error-single", "success"]
"""Which analyst wrote an analysis: the agentic error analyst (ReAct with the verifier), the
single-call error analyst (the paper's ablation) or the single-call success analyst."""

AnalystChoice = Literal["error", "error-single", "success", "combined"]
"""What ``trace2skill analyse --analyst`` selects: ``error`` = the agentic error analyst on
failures, ``error-single`` = single-call on failures, ``success`` = single-call on passes,
``combined`` = agentic on failures and success on passes."""

ANALYST_CHOICES: tuple[str, ...] = ("error", "error-single", "success", "combined")


def analyst_for(choice: str, passed: bool) -> AnalystKind | None:
    """The analyst that ``choice`` runs on a passing / failing trajectory (None: skipped)."""
    if passed:
        return "success" if choice in ("success", "combined") else None
    if choice in ("error", "combined"):
        return "error-agentic"
    return "error-single" if choice == "error-single" else None


def analysis_id(trajectory_id: str, analyst: str, model: str, skill_commit: str, seed: int) -> str:
    """16 hex chars of a hash of what determines an analysis (its resume key)."""
    parts = [ANALYST_VERSION, trajectory_id, analyst, model, skill_commit, seed]
    payload = json.dumps(parts, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:16]


class AnalyseConfig(BaseModel):
    """The analyse stage's settings; the manifest records them resolved (``None`` fields are
    filled in from the run: the author model, the skill, its repository, the base)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analyst: AnalystChoice = Field("error", description="Which analysts run (see AnalystChoice).")
    model: str | None = Field(
        None, description="Author model (litellm string); None: the trajectories' agent model."
    )
    seed: int = Field(0, description="Sampling seed of the analysts (hashed per trajectory).")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature of the analysts.")
    max_turns: int = Field(8, ge=2, le=30, description="Agentic analyst: most tool steps.")
    max_tokens: int = Field(
        1536, ge=256, description="Room for one reply (a patch with 3 edits needs ~1k tokens)."
    )
    concurrency: int | None = Field(
        None, ge=1, description="Analyses at once; None: 1 for the embedded model, else 4."
    )
    limit: int | None = Field(None, ge=1, description="Analyse at most this many trajectories.")
    skill_path: str | None = Field(
        None,
        description="The skill folder S0 (given: a path; recorded: relative to the repository "
        "root); None: the folder the rollout recorded.",
    )
    repo: str | None = Field(
        None, description="The skill repository; None: the git repository holding the skill."
    )
    run_id: str | None = Field(
        None, description="Run id in the repository's refs (t2s/<run_id>/...); None: the run's."
    )
    skill_commit: str | None = Field(None, description="Git tree id of S0 (resolved).")
    base_commit: str | None = Field(None, description="Commit of t2s/<run_id>/base (resolved).")
    executor: str = "local"


class AnalysisUnit(BaseModel):
    """One analysis to do, as plain data: its id (resume key), the trajectory and analyst."""

    model_config = ConfigDict(frozen=True)

    id: str
    trajectory_id: str
    analyst: AnalystKind


class DroppedEdit(BaseModel):
    """An edit of an analysis' patch that the checks removed, and why."""

    index: int = Field(description="Position of the edit in the analyst's reply.")
    reason: str = Field(description="answer-leak, or the patch engine's reject code.")
    message: str = Field("", description="Details (the leaked value is never repeated).")


class AnalysisRecord(BaseModel):
    """One line of ``analyses.jsonl``: one analysed trajectory, kept or dropped."""

    schema_version: int = ANALYSIS_SCHEMA_VERSION
    id: str = Field(description="Analysis id (content hash; see analysis_id()).")
    trajectory_id: str
    task_id: str
    outcome: Literal["pass", "fail"] = Field(description="The trajectory's verdict.")
    analyst: AnalystKind
    model: str = Field(description="Author model.")
    status: Literal["kept", "dropped"]
    reason: str | None = Field(None, description="Why it was dropped; None when kept.")
    patch_id: str | None = Field(None, description="Id of patches/<id>.json; None if dropped.")
    fix_passed: bool | None = Field(
        None, description="Agentic analyst: did its fix reach PASS (None for the others)."
    )
    turns: int = Field(0, description="Model calls the analysis made.")
    tokens_in: int | None = Field(
        0, description="Prompt tokens of its calls; None when a call's were not reported."
    )
    tokens_out: int | None = Field(
        0, description="Completion tokens of its calls; None when a call's were not reported."
    )
    started_at: float = Field(description="Unix epoch seconds.")
    ended_at: float = Field(description="Unix epoch seconds.")
    report: str = Field("", description="The analysis text (bounded).")
    dropped_edits: list[DroppedEdit] = Field(
        default_factory=list, description="Edits removed by the leak filter or the patch engine."
    )
    repaired_edits: list[DroppedEdit] = Field(
        default_factory=list,
        description="Inserts whose anchor was not in the section, appended to it instead.",
    )
    step: int | None = Field(
        None,
        description="Sequential consolidation: the step whose batch it belongs to (analysed "
        "against the skill the steps before made); None: analysed against S0 (parallel).",
    )


class AnalysisBatch(BaseModel):
    """One step of a sequential consolidation, as the analyse stage runs it: the batch's
    trajectories, analysed against the skill the steps before made (not S0), their patches
    committed on that skill's commit."""

    model_config = ConfigDict(frozen=True)

    step: int = Field(ge=1, description="The step (1-based).")
    steps: int = Field(ge=1, description="Steps in the chain (for the progress label).")
    trajectory_ids: list[str] = Field(description="The batch's trajectories, in order.")
    parent: str = Field(description="Commit of the skill analysed (S_k-1): the patches' parent.")


class AnalyseSummary(BaseModel):
    """What one analyse call did, over every analysis of the run (resumed ones included)."""

    run_dir: Path
    run_id: str
    analyst: str
    model: str
    trajectories: int = Field(description="Trajectories selected for analysis (after limit).")
    ran: int = Field(description="Analyses done by this call.")
    resumed: int = Field(description="Analyses already in analyses.jsonl.")
    kept: int
    dropped: int
    reasons: dict[str, int] = Field(default_factory=dict, description="Drop reasons (first word).")
    patch_ids: list[str] = Field(default_factory=list, description="Kept patches, in order.")
    branches: dict[str, str] = Field(
        default_factory=dict, description="Patch id -> commit of t2s/<run>/patch/<id>."
    )
    skipped: int = Field(0, description="Trajectories no selected analyst applies to.")
    tokens_in: int = Field(0, description="Prompt tokens of the analyses that reported them.")
    tokens_out: int = Field(0, description="Completion tokens of the analyses that reported them.")
    tokens_unreported: int = Field(
        0, description="Analyses with a call whose token counts were not reported (left out)."
    )
    calls: int = Field(0, description="Model calls this call made (resumed analyses made none).")
    cache_hits: int = Field(
        0, description="Of them, replies replayed from the response cache (0 tokens, no time)."
    )
    wall_s: float = 0.0
