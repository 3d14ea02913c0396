"""trace2skill: evolve agent skills from trajectories, with every step kept in git.

The public Python API is re-exported here so a notebook calls what the CLI calls.
"""

from __future__ import annotations

__version__ = "0.1.0"

from toolkit.patch import Edit, Patch, PatchResult, apply_patch, load_patch, write_result
from toolkit.repo import SkillRepo, blame_file, export_bundle, import_bundle, sanitize_run_id
from toolkit.skill import Budgets, Skill, load_skill, validate_skill

__all__ = [
    "Budgets",
    "Edit",
    "Patch",
    "PatchResult",
    "Skill",
    "SkillRepo",
    "apply_patch",
    "blame_file",
    "export_bundle",
    "import_bundle",
    "load_patch",
    "load_skill",
    "sanitize_run_id",
    "validate_skill",
    "write_result",
]
