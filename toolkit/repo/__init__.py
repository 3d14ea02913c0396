"""The git skill store: runs as refs under ``refs/heads/t2s/<run>/`` in the user's repository.

Public API (see DESIGN.md section 2): open a repository, snapshot a run's base, write patch
commits in bulk, detect conflicts and write consolidation merges, derived branches, line
provenance and run bundles. Nothing here touches the user's working tree, index or HEAD.
"""

from toolkit.repo.branches import (
    DerivedCommit,
    PatchCommit,
    base_of,
    set_result,
    write_ablations,
    write_only,
    write_patches,
    write_sequence,
)
from toolkit.repo.bundle import BundleInfo, export_bundle, import_bundle, read_bundle
from toolkit.repo.merge import (
    Conflict,
    ConflictHunk,
    GroupMerge,
    Resolution,
    Resolver,
    analyse_groups,
    consolidate,
    consolidate_level,
    leaf_sources,
    parse_conflict_markers,
    plan_groups,
    union_resolver,
    write_group_commits,
)
from toolkit.repo.plumbing import Changes, CommitSpec
from toolkit.repo.provenance import LineProvenance, blame_file, blame_line
from toolkit.repo.store import (
    SkillRepo,
    check_id,
    open_run_repo,
    run_prefix,
    sanitize_run_id,
)
from toolkit.repo.trailers import Trailers, format_message, parse_trailers

__all__ = [
    "BundleInfo",
    "Changes",
    "CommitSpec",
    "Conflict",
    "ConflictHunk",
    "DerivedCommit",
    "GroupMerge",
    "LineProvenance",
    "PatchCommit",
    "Resolution",
    "Resolver",
    "SkillRepo",
    "Trailers",
    "analyse_groups",
    "base_of",
    "blame_file",
    "blame_line",
    "check_id",
    "consolidate",
    "consolidate_level",
    "export_bundle",
    "format_message",
    "import_bundle",
    "leaf_sources",
    "parse_conflict_markers",
    "open_run_repo",
    "parse_trailers",
    "plan_groups",
    "read_bundle",
    "run_prefix",
    "sanitize_run_id",
    "union_resolver",
    "write_ablations",
    "write_group_commits",
    "write_only",
    "write_patches",
    "set_result",
    "write_sequence",
]
