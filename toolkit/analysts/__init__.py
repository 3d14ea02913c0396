"""Stage 2 of the method: analyse each trajectory against a frozen S0 into one leaf patch.

One concept per module: ``records`` (config, units, ``analyses.jsonl`` records, summary),
``replies`` (bounded response schemas), ``prompts``, ``calls`` (one model call),
``single`` (single-call error and success analysts), ``agentic`` (the ReAct error analyst with
the verifier), ``leaks`` (the answer-leak filter), ``patches`` (reply -> checked leaf patch ->
``patches/<id>.json`` -> ``t2s/<run>/patch/<id>``) and ``stage`` (the stage itself).

Example::

    from toolkit.analysts import AnalyseConfig, run_analyses

    summary = run_analyses("runs/wtq-s0", AnalyseConfig(analyst="combined", limit=30))
    print(summary.kept, summary.reasons)
"""

from toolkit.analysts.leaks import leaked_values, mask_values
from toolkit.analysts.patches import check_patch, restates_skill
from toolkit.analysts.records import (
    ANALYST_CHOICES,
    AnalyseConfig,
    AnalyseSummary,
    AnalysisRecord,
    AnalysisUnit,
    AnalystKind,
    DroppedEdit,
    analysis_id,
    analyst_for,
)
from toolkit.analysts.replies import EditReply, ErrorReply, PatchReply, SuccessReply
from toolkit.analysts.stage import STAGE, AnalyseError, arun_analyses, run_analyses

__all__ = [
    "ANALYST_CHOICES",
    "STAGE",
    "AnalyseConfig",
    "AnalyseError",
    "AnalyseSummary",
    "AnalysisRecord",
    "AnalysisUnit",
    "AnalystKind",
    "DroppedEdit",
    "EditReply",
    "ErrorReply",
    "PatchReply",
    "SuccessReply",
    "analysis_id",
    "analyst_for",
    "arun_analyses",
    "check_patch",
    "restates_skill",
    "leaked_values",
    "mask_values",
    "run_analyses",
]
