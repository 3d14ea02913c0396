"""The run-file contract of the evolve stages, as the index reads it.

``analyses.jsonl`` (stage ``analyse``), ``merges.jsonl`` (stage ``consolidate``) and
``ablations.jsonl`` (stage ``attribute``) are written by their stages; these models hold the
fields every producer must write (extra fields are ignored), so the index depends on the
contract and not on one producer's model. Each line carries ``schema_version``; a line from a
newer version than :data:`RUN_FILE_SCHEMA_VERSION` is refused (the index reports and skips it
rather than misread it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RUN_FILE_SCHEMA_VERSION = 2
"""2: token counts of analyses and merges are null when a provider did not report them
(version 1 lines hold no null and read as they are)."""


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int = Field(description="Format version of the line (1 or 2).")

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > RUN_FILE_SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is newer than this toolkit reads "
                f"({RUN_FILE_SCHEMA_VERSION}); upgrade trace2skill"
            )
        return value


class AnalysisLine(_Line):
    """One analysed trajectory (a line of ``analyses.jsonl``)."""

    id: str = Field(description="Analysis id (content hash).")
    trajectory_id: str
    task_id: str
    outcome: Literal["pass", "fail"]
    analyst: str = Field(description="error-agentic | error-single | success.")
    model: str = Field(description="The analyst's model.")
    status: Literal["kept", "dropped"]
    reason: str | None = Field(default=None, description="Why it was dropped.")
    patch_id: str | None = Field(default=None, description="The patch written; None if dropped.")
    fix_passed: bool | None = Field(default=None, description="Did the agentic fix pass.")
    turns: int = 0
    tokens_in: int | None = Field(default=0, description="None: a call's were not reported.")
    tokens_out: int | None = Field(default=0, description="None: a call's were not reported.")
    started_at: float = 0.0
    ended_at: float = 0.0
    report: str = Field(default="", description="The analysis text (bounded).")


class ConflictLine(BaseModel):
    """A file with conflicts in a group merge."""

    model_config = ConfigDict(extra="ignore")

    file: str
    hunks: int = 0


class MergeEditLine(BaseModel):
    """One edit of a consolidated patch and where it came from."""

    model_config = ConfigDict(extra="ignore")

    id: str
    cited: list[str] = Field(default_factory=list, description="Child edit ids it came from.")
    sources: list[str] = Field(default_factory=list, description="Leaf patch ids behind it.")
    support: int = Field(description="len(sources), computed by the code, not the LLM.")


class DroppedLine(BaseModel):
    """A child edit the merge operator left out, and why."""

    model_config = ConfigDict(extra="ignore")

    edit_id: str
    reason: str | None = None


class MergeLine(_Line):
    """One group merge of the consolidation tree (a line of ``merges.jsonl``)."""

    level: int = Field(ge=1)
    group: str
    children: list[str] = Field(description="Child patch (level 1) or merged patch ids.")
    child_commits: list[str] = Field(default_factory=list)
    commit: str | None = Field(default=None, description="The merge commit; None if none.")
    patch_id: str | None = Field(default=None, description="The consolidated patch's id.")
    status: Literal["merged", "union", "passed_up", "failed"]
    reason: str | None = None
    conflicts: list[ConflictLine] = Field(default_factory=list)
    edits: list[MergeEditLine] = Field(default_factory=list)
    dropped: list[DroppedLine] = Field(default_factory=list)
    model: str | None = None
    tokens_in: int | None = Field(default=0, description="None: a call's were not reported.")
    tokens_out: int | None = Field(default=0, description="None: a call's were not reported.")
    started_at: float = 0.0
    ended_at: float = 0.0
    step: int | None = Field(
        default=None,
        description="Sequential consolidation: the step (its batch merged into the skill of "
        "the step before); None in a parallel tree.",
    )

    @property
    def node_id(self) -> str:
        """The merge's id in the tree: ``L<level>/<group>``."""
        return f"L{self.level}/{self.group}"


class AblationLine(_Line):
    """One edit (or edit group) evaluated by ablation (a line of ``ablations.jsonl``)."""

    edit_id: str
    patch_id: str | None = None
    kind: Literal["ablate", "only"] = Field(description="S* without it, or S0 with only it.")
    commit: str = Field(description="The skill commit evaluated.")
    skill_commit: str | None = Field(
        None, description="Version id (tree id) of the evaluated skill, as trajectories name it."
    )
    split: str
    seed: int = 0
    n: int = Field(ge=0, description="Tasks evaluated.")
    passed: int = Field(ge=0)
    pass_rate: float | None = None
    delta: float | None = Field(
        default=None, description="Paired difference vs S* (ablate) or vs S0 (only)."
    )
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = Field(None, description="Exact McNemar p-value of delta.")
    effect: float | None = Field(
        None, description="The edit's contribution: -delta for ablate, delta for only (> 0 helps)."
    )
    effect_ci_low: float | None = None
    effect_ci_high: float | None = None
    support: int | None = Field(None, description="Leaf patches behind the edit.")
    gained: list[str] = Field(default_factory=list, description="Tasks only this version passed.")
    lost: list[str] = Field(default_factory=list, description="Tasks only the reference passed.")
    tasks: list[str] = Field(default_factory=list)
    reference_commit: str | None = Field(None, description="The commit compared with (S*/S0).")
    reference_skill_commit: str | None = Field(None, description="Its version id (tree id).")
    suite: str | None = None
    model: str | None = None
    reference_passed: int | None = Field(None, description="Tasks the reference passed.")
    reference_pass_rate: float | None = None
    file: str | None = Field(None, description="File the edit touches.")
    op: str | None = None
    target_section: str | None = None
    also_removed: list[str] = Field(
        default_factory=list, description="Edits that had to go with it (ablate)."
    )
