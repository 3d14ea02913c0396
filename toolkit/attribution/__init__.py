"""Attribution: which edit of an evolved skill caused what, and which sections the agent uses.

The paper's two open problems, answered by measurement (DESIGN section 7):

* :func:`ablate` - per-edit leave-one-out and add-one-in evaluations on the same tasks and
  seeds, paired effects with bootstrap 95% CIs, stored in ``ablations.jsonl``;
* :func:`section_usage` - reads, citations and echoes per section and skill version, pass rate with
  vs without each section's use;
* :func:`line_support` / :attr:`RunContext.support` - the leaf patches and trajectories
  behind each line and edit of S*;
* :func:`propose_prune` - a patch that removes sections nobody used and no ablation found
  useful, committed on ``t2s/<run>/prune`` with the evidence in its message;
* :func:`render_report` - the run's markdown report (the PR body reuses it).
"""

from toolkit.attribution.ablation import (
    ABLATIONS_FILE,
    AblationOutcome,
    AblationPlan,
    AblationRecord,
    ablate,
    ablations_path,
    plan_versions,
    read_ablations,
    select_edits,
    store_ablations,
)
from toolkit.attribution.prune import PruneCandidate, PruneProposal, propose_prune, read_prune
from toolkit.attribution.report import render_report, score_lines, write_report
from toolkit.attribution.run import AttributionError, EditSupport, RunContext, open_run
from toolkit.attribution.support import LineSupport, line_support
from toolkit.attribution.usage import SectionInfo, SectionUsage, section_usage, skill_sections

__all__ = [
    "ABLATIONS_FILE",
    "AblationOutcome",
    "AblationPlan",
    "AblationRecord",
    "AttributionError",
    "EditSupport",
    "LineSupport",
    "PruneCandidate",
    "PruneProposal",
    "RunContext",
    "SectionInfo",
    "SectionUsage",
    "ablate",
    "ablations_path",
    "line_support",
    "open_run",
    "plan_versions",
    "propose_prune",
    "read_ablations",
    "read_prune",
    "render_report",
    "score_lines",
    "section_usage",
    "select_edits",
    "skill_sections",
    "store_ablations",
    "write_report",
]
