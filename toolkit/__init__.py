"""trace2skill: evolve agent skills from trajectories, with every step kept in git.

The public Python API is re-exported here so a notebook calls what the CLI calls.
"""

from __future__ import annotations

__version__ = "0.1.0"

from toolkit.evaluate import EvalResult, compare, evaluate, load_eval
from toolkit.llm import acomplete, complete
from toolkit.patch import Edit, Patch, PatchResult, apply_patch, load_patch, write_result
from toolkit.repo import SkillRepo, blame_file, export_bundle, import_bundle, sanitize_run_id
from toolkit.rollout import RolloutSummary, run_rollouts
from toolkit.skill import Budgets, Skill, load_skill, validate_skill
from toolkit.trajectory import Trajectory, import_trajectories, read_trajectories

__all__ = [
    "Budgets",
    "EvalResult",
    "Edit",
    "Patch",
    "PatchResult",
    "RolloutSummary",
    "Skill",
    "SkillRepo",
    "Trajectory",
    "acomplete",
    "apply_patch",
    "blame_file",
    "compare",
    "complete",
    "evaluate",
    "export_bundle",
    "import_bundle",
    "import_trajectories",
    "load_eval",
    "load_patch",
    "load_skill",
    "read_trajectories",
    "run_rollouts",
    "sanitize_run_id",
    "validate_skill",
    "write_result",
]
