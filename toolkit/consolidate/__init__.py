"""Stage 3 of Trace2Skill: hierarchical consolidation of patches as staged git merges.

The LLM merge operator (:class:`MergeOperator`) is a :data:`toolkit.repo.Resolver`: git
finds the conflicts between a group's children, the operator proposes one patch citing the
child edits it used, and the code computes support, runs the guardrails and writes the
merge commit. :func:`run_consolidation` runs the whole stage on a run folder.
"""

from toolkit.consolidate.leaves import LeafInput, write_leaf_patches
from toolkit.consolidate.nodes import EditPool, Node, leaf_node, pool_edits
from toolkit.consolidate.operator import GroupOutcome, MergeOperator, OperatorSettings
from toolkit.consolidate.prompt import MergedEdit, MergeReply, parse_pool_from_prompt
from toolkit.consolidate.provenance import SkillLine, skill_lines
from toolkit.consolidate.records import (
    MERGES_FILE,
    DroppedEdit,
    EditSources,
    MergeRecord,
    read_merges,
    read_patch,
    save_patch,
)
from toolkit.consolidate.run import (
    ConsolidateConfig,
    ConsolidationSummary,
    arun_consolidation,
    plan_balanced,
    run_consolidation,
)

__all__ = [
    "MERGES_FILE",
    "ConsolidateConfig",
    "ConsolidationSummary",
    "DroppedEdit",
    "EditPool",
    "EditSources",
    "GroupOutcome",
    "LeafInput",
    "MergeOperator",
    "MergeRecord",
    "MergeReply",
    "MergedEdit",
    "Node",
    "OperatorSettings",
    "SkillLine",
    "arun_consolidation",
    "leaf_node",
    "parse_pool_from_prompt",
    "plan_balanced",
    "pool_edits",
    "read_merges",
    "read_patch",
    "run_consolidation",
    "save_patch",
    "skill_lines",
    "write_leaf_patches",
]
