"""What a reviewer of an evolved skill needs, read from a run folder; the gate; the PR body.

:func:`load_review` gathers a run's evidence into a :class:`RunReview`: the paired S* - S0
comparison on the run's evaluation (all seeds pooled; the no-skill baseline beside it when it
was evaluated), the tasks S* broke and fixed, the final patch's edits with their support and
ablation effects, section usage of S0 vs S*, how the patches were made, cost and time. It reads
only the run-file contract's fields; files another stage has not written yet (``patches/``,
``merges.jsonl``, ``ablations.jsonl``, ``analyses.jsonl``, ``llm_calls.jsonl``) are listed in
:attr:`RunReview.missing` instead of failing.

:func:`check_gate` and :func:`render_body` are pure. The gate refuses a PR unless the paired
95% CI of S* - S0 lies above 0, the exact McNemar p is below 0.05, and S* breaks at most
``max_regressions`` tasks that S0 passed in every seed. A task is *broken* when S0 passed it
in every evaluated seed and S* did not, *fixed* when S* passed it in every seed and S0 did
not.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from shlex import quote
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.attribution.ablation import edit_effect
from toolkit.cost import UNPRICED_WHY, CostTally
from toolkit.errors import ToolkitError
from toolkit.evaluate import NO_SKILL, EvalRecord, EvalSummary, load_eval
from toolkit.llm.calls import LLMCallRecord
from toolkit.memory import run_memory_condition
from toolkit.patch import Patch
from toolkit.repo.plumbing import Git
from toolkit.rollout import Manifest, read_manifest
from toolkit.runs import stage_times
from toolkit.stats import ALPHA, PairedComparison, PassRate, paired_comparison, pass_rate
from toolkit.tasks import SUITES, scoring_options
from toolkit.tokens import TokenTally, describe_tokens
from toolkit.trajectory import Trajectory, TrajectoryError, read_jsonl

REVIEW_SCHEMA_VERSION = 1
#: Rows shown per table before "... and N more"; keeps the body under GitHub's 65,536 chars.
MAX_ROWS = 25
#: GitHub refuses PR bodies longer than this.
BODY_LIMIT = 65_000
#: The marker that tells a trace2skill PR body apart (and names its run).
MARKER = "<!-- trace2skill:run={run} -->"

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ReviewError(ToolkitError):
    """A run folder cannot be reviewed (no manifest, no result, refs not found)."""


# ---------------------------------------------------------------------------------------------
# Run-file lines this module reads (only the contract's fields; others are ignored)
# ---------------------------------------------------------------------------------------------


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AnalysisLine(_Line):
    """A line of ``analyses.jsonl`` (the fields read here)."""

    analyst: str
    status: str
    outcome: str | None = None
    reason: str | None = None


class MergeEdit(_Line):
    """One edit of a consolidated patch in ``merges.jsonl``."""

    id: str
    sources: list[str] = Field(default_factory=list)
    support: int = 0


class MergeLine(_Line):
    """A line of ``merges.jsonl`` (the fields read here)."""

    level: int
    group: str
    status: str
    patch_id: str | None = None
    commit: str | None = None
    edits: list[MergeEdit] = Field(default_factory=list)
    dropped: list[dict[str, Any]] = Field(default_factory=list)
    step: int | None = None


class AblationLine(_Line):
    """A line of ``ablations.jsonl`` (the fields read here)."""

    edit_id: str
    kind: str
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    p_value: float | None = None


# ---------------------------------------------------------------------------------------------
# The review
# ---------------------------------------------------------------------------------------------


class Effect(BaseModel):
    """A paired effect of one edit with its 95% CI (from ``ablations.jsonl``), signed as the
    report and ``ablate`` sign it: > 0 means the edit helps (ablate: S* minus S* without it;
    only: S0 with only it minus S0)."""

    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    p_value: float | None = Field(default=None, description="Exact McNemar p; None: unknown.")


def effect_of(line: AblationLine) -> Effect:
    """The edit's effect from an ablation line (:func:`toolkit.attribution.ablation.edit_effect`:
    an ablation's delta is S* without the edit minus S*, so its effect is -delta)."""
    effect, low, high = edit_effect(line.kind, line.delta, line.ci_low, line.ci_high)
    return Effect(effect=effect, ci_low=low, ci_high=high, n=line.n, p_value=line.p_value)


class EditRow(BaseModel):
    """One edit of the final patch."""

    id: str
    file: str
    op: str
    section: str | None
    text: str = Field(default="", description="The edit's new text, first line, shortened.")
    support: int | None = Field(description="Leaf patches behind the edit (None: unknown).")
    sources: list[str] = Field(default_factory=list, description="Those leaf patch ids.")
    ablate: Effect | None = Field(default=None, description="S* minus S* without it.")
    only: Effect | None = Field(default=None, description="S0 with only it, minus S0.")
    step: int | None = Field(default=None, description="Sequential: the step that made it.")


class TaskOutcome(BaseModel):
    """A task's passes under S0 and S* over the evaluated seeds."""

    task_id: str
    seeds: int
    s0_passed: int
    sstar_passed: int


class Headline(BaseModel):
    """S0 and S* (and the no-skill baseline) on the run's evaluation, paired over all seeds."""

    suite: str
    split: str
    model: str
    delivery: str
    protocol: str | None = Field(None, description="The agent's protocol; None: not recorded.")
    seeds: list[int]
    tasks: int = Field(description="Distinct tasks paired.")
    baseline: PassRate | None = Field(description="No skill, on the same tasks and seeds.")
    memory: PassRate | None = Field(
        None,
        description="S0 + the run's memory bank (top-1 BM25: the retrieval memory baseline), "
        "on the same tasks and seeds.",
    )
    s0: PassRate
    sstar: PassRate
    paired: PairedComparison = Field(description="S* - S0 over the (task, seed) pairs.")
    s0_eval: str = Field(description="S0's eval file, relative to the run folder.")
    sstar_eval: str = Field(description="S*'s eval file, relative to the run folder.")
    scoring: dict[str, Any] = Field(
        default_factory=dict,
        description="How answers were scored (a jsonl suite's scoring and tolerance), so the "
        "re-run command scores them the same way; empty for a suite's own scoring.",
    )


class UsageRow(BaseModel):
    """How often a skill section was read, cited or echoed, by S0's and S*'s trajectories."""

    ref: str
    s0: float | None
    sstar: float | None


class StageRow(BaseModel):
    """One manifest stage: status and wall time."""

    name: str
    status: str
    seconds: float | None


class CostRow(BaseModel):
    """Model calls of one model in ``llm_calls.jsonl``."""

    model: str
    calls: int
    cache_hits: int
    tokens_in: int = Field(description="Prompt tokens of the calls that reported them.")
    tokens_out: int = Field(description="Completion tokens of the calls that reported them.")
    tokens_unreported: int = Field(
        0, description="Calls whose provider reported no token counts, left out of the sums."
    )
    cost_usd: float = Field(description="Cost in USD of the calls that were priced.")
    cost_unpriced: int = Field(
        0,
        description="Calls whose cost is unknown (no price for the model, no usage reported), "
        "left out of cost_usd.",
    )


class FileChange(BaseModel):
    """Lines added and removed in one file, S0 -> S*."""

    path: str
    added: int | None
    removed: int | None


class RunReview(BaseModel):
    """Everything the PR body and the gate are made from."""

    schema_version: int = REVIEW_SCHEMA_VERSION
    run_id: str
    run_dir: str
    skill_path: str
    skill_name: str
    base_commit: str
    result_commit: str
    final_patch_id: str | None
    consolidation: str | None = Field(
        default=None,
        description="How S* was made, e.g. 'parallel (B=5, L_max=5)' or 'sequential (Seq-B=4, "
        "3 steps)'; None when the run does not record it.",
    )
    headline: Headline | None
    outcomes: list[TaskOutcome] = Field(default_factory=list)
    edits: list[EditRow] = Field(default_factory=list)
    changelog: list[str] = Field(default_factory=list)
    analyses: dict[str, int] = Field(default_factory=dict, description="'analyst status' -> count.")
    merges: dict[str, int] = Field(default_factory=dict, description="merge status -> count.")
    merge_levels: int = 0
    usage: list[UsageRow] = Field(default_factory=list)
    stages: list[StageRow] = Field(default_factory=list)
    cost: list[CostRow] = Field(default_factory=list)
    files: list[FileChange] = Field(default_factory=list)
    provenance_refs: list[str] = Field(
        default_factory=list, description="Patch and merge refs of the run (short names)."
    )
    missing: list[str] = Field(default_factory=list, description="What could not be shown.")
    creation: str | None = Field(
        None, description="Creation mode: the line saying S0 is the author model's draft."
    )

    @property
    def broken(self) -> list[TaskOutcome]:
        """Tasks S0 passed in every seed that S* failed in at least one."""
        return [t for t in self.outcomes if t.s0_passed == t.seeds and t.sstar_passed < t.seeds]

    @property
    def fixed(self) -> list[TaskOutcome]:
        """Tasks S* passed in every seed that S0 failed in at least one."""
        return [t for t in self.outcomes if t.sstar_passed == t.seeds and t.s0_passed < t.seeds]


# ---------------------------------------------------------------------------------------------
# Loading (I/O)
# ---------------------------------------------------------------------------------------------


def _read_lines(path: Path, model: type[M], missing: list[str]) -> list[M] | None:
    """The lines of a contract file; None (and a note) when it is absent or unreadable."""
    if not path.is_file():
        missing.append(f"`{path.name}` (not written by this run yet)")
        return None
    try:
        return read_jsonl(path, model).records
    except TrajectoryError as exc:
        missing.append(f"`{path.name}` is unreadable ({exc})")
        return None


def _stage_config(manifest: Manifest, key: str) -> Any:
    values = [s.config[key] for s in manifest.stages.values() if s.config.get(key) is not None]
    return values[-1] if values else None


def _stage_count(manifest: Manifest, key: str) -> Any:
    values = [s.counts[key] for s in manifest.stages.values() if s.counts.get(key) is not None]
    return values[-1] if values else None


def _infer_skill_path(git: Git, base: str, result: str) -> str | None:
    """The skill folder the run changed: the nearest folder with a SKILL.md above a change."""
    names = git.out("diff", "--name-only", "--no-renames", base, result).splitlines()
    candidates: list[str] = []
    for name in names:
        parts = name.split("/")
        for k in range(len(parts) - 1, -1, -1):
            folder = "/".join(parts[:k])
            candidates.append(folder)
    seen = list(dict.fromkeys(candidates))
    found = git.resolve([f"{result}:{f + '/' if f else ''}SKILL.md" for f in seen])
    for folder, oid in zip(seen, found, strict=True):
        if oid is not None:
            return folder
    return None


def _summaries(path: Path) -> list[EvalSummary]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a torn last line; load_eval reports real damage
        if isinstance(data, dict) and data.get("kind") == "summary":
            with suppress(ValidationError):  # load_eval reports a damaged file in one line
                out.append(EvalSummary.model_validate(data))
    return out


def _choose_split(run_dir: Path, s0: str, sstar: str) -> str | None:
    splits_a = {p.stem for p in (run_dir / "evals" / s0).glob("*.jsonl")}
    splits_b = {p.stem for p in (run_dir / "evals" / sstar).glob("*.jsonl")}
    common = sorted(splits_a & splits_b)
    if not common:
        return None
    return "test" if "test" in common else common[0]


def _records_by_seed(
    path: Path, suite: str, model: str, delivery: str, protocol: str, seeds: Iterable[int]
) -> dict[int, list[EvalRecord]]:
    return {
        seed: load_eval(
            path, suite=suite, model=model, seed=seed, delivery=delivery, protocol=protocol or None
        ).records
        for seed in seeds
    }


def _headline(
    run_dir: Path, s0_tree: str, sstar_tree: str, missing: list[str]
) -> tuple[Headline | None, list[TaskOutcome]]:
    split = _choose_split(run_dir, s0_tree, sstar_tree)
    if split is None:
        missing.append(
            "the evaluation of S0 and S* (no `evals/<skill>/<split>.jsonl` for both skill "
            "versions): scores, the gate and flipped tasks need it"
        )
        return None, []
    path_a = run_dir / "evals" / s0_tree / f"{split}.jsonl"
    path_b = run_dir / "evals" / sstar_tree / f"{split}.jsonl"
    # An evaluation is told apart by suite, model, delivery and protocol (then seed).
    groups_a: dict[tuple[str, str, str, str], set[int]] = defaultdict(set)
    for s in _summaries(path_a):
        groups_a[(s.suite, s.model, s.delivery, s.protocol or "")].add(s.seed)
    groups_b: dict[tuple[str, str, str, str], set[int]] = defaultdict(set)
    for s in _summaries(path_b):
        groups_b[(s.suite, s.model, s.delivery, s.protocol or "")].add(s.seed)
    common = {key: groups_a[key] & groups_b[key] for key in groups_a if key in groups_b}
    common = {key: seeds for key, seeds in common.items() if seeds}
    if not common:
        missing.append(
            f"a paired evaluation: S0 and S* were not evaluated with the same model, delivery "
            f"and seed on {split}"
        )
        return None, []
    # The condition evaluated over the most seeds (ties: the most recently written by S*).
    order = [(s.suite, s.model, s.delivery, s.protocol or "") for s in _summaries(path_b)]
    key = max(common, key=lambda k: (len(common[k]), max(i for i, o in enumerate(order) if o == k)))
    suite, model, delivery, protocol = key
    seeds = sorted(common[key])
    recs_a = _records_by_seed(path_a, suite, model, delivery, protocol, seeds)
    recs_b = _records_by_seed(path_b, suite, model, delivery, protocol, seeds)
    pairs_a: list[bool] = []
    pairs_b: list[bool] = []
    per_task: dict[str, list[int]] = {}
    pairs: list[tuple[str, int]] = []
    for seed in seeds:
        by_task_b = {r.task_id: r for r in recs_b[seed]}
        for rec in recs_a[seed]:
            other = by_task_b.get(rec.task_id)
            if other is None:
                continue
            pairs.append((rec.task_id, seed))
            pairs_a.append(rec.passed)
            pairs_b.append(other.passed)
            counts = per_task.setdefault(rec.task_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += rec.passed
            counts[2] += other.passed
    path_none = run_dir / "evals" / NO_SKILL / f"{split}.jsonl"
    baseline = _beside(path_none, (suite, model, "none", protocol), seeds, pairs)
    condition = run_memory_condition(run_dir, s0_tree)
    memory = None
    if condition is not None:
        path_memory = run_dir / "evals" / condition / f"{split}.jsonl"
        memory = _beside(path_memory, (suite, model, delivery, protocol), seeds, pairs)
    headline = Headline(
        suite=suite,
        split=split,
        model=model,
        delivery=delivery,
        protocol=protocol or None,
        seeds=seeds,
        tasks=len(per_task),
        baseline=baseline,
        memory=memory,
        s0=pass_rate(pairs_a, seed=seeds[0]),
        sstar=pass_rate(pairs_b, seed=seeds[0]),
        paired=paired_comparison(pairs_a, pairs_b, seed=seeds[0]),
        s0_eval=path_a.relative_to(run_dir).as_posix(),
        sstar_eval=path_b.relative_to(run_dir).as_posix(),
    )
    outcomes = [
        TaskOutcome(task_id=t, seeds=c[0], s0_passed=c[1], sstar_passed=c[2])
        for t, c in per_task.items()
    ]
    return headline, outcomes


def _beside(
    path: Path, key: tuple[str, str, str, str], seeds: list[int], pairs: list[tuple[str, int]]
) -> PassRate | None:
    """A baseline's pass rate on exactly the (task, seed) ``pairs`` of the headline, read from
    its eval file ``path`` with the headline's suite, model, delivery and protocol (``key``);
    None when the file does not hold every pair."""
    if not path.is_file():
        return None
    suite, model, delivery, protocol = key
    keys = {(s.suite, s.model, s.seed, s.delivery, s.protocol or "") for s in _summaries(path)}
    if not all((suite, model, seed, delivery, protocol) in keys for seed in seeds):
        return None
    records = _records_by_seed(path, suite, model, delivery, protocol, seeds)
    by_key = {(r.task_id, seed): r.passed for seed in seeds for r in records[seed]}
    if not all(p in by_key for p in pairs):
        return None
    return pass_rate([by_key[p] for p in pairs], seed=seeds[0])


def _usage(
    run_dir: Path,
    headline: Headline,
    s0_tree: str,
    sstar_tree: str,
    missing: list[str],
    edited: Sequence[str] = (),
) -> list[UsageRow]:
    """Per section ref, the share of S0's and S*'s evaluation trajectories that used it; the
    sections the final patch edits are listed even when nothing used them (that is what a
    reviewer of the edit needs to see)."""
    path = run_dir / "evals" / "trajectories.jsonl"
    try:
        trajectories = read_jsonl(path, Trajectory).records
    except TrajectoryError as exc:
        missing.append(f"section usage: `evals/trajectories.jsonl` is unreadable ({exc})")
        return []
    used: dict[str, Counter[str]] = {s0_tree: Counter(), sstar_tree: Counter()}
    totals: Counter[str] = Counter()
    for t in trajectories:
        if (
            t.skill_commit in used
            and t.suite == headline.suite
            and t.model == headline.model
            and t.delivery == headline.delivery
            and (headline.protocol is None or t.protocol == headline.protocol)
            and t.seed in headline.seeds
        ):
            totals[t.skill_commit] += 1
            used[t.skill_commit].update({use.ref for use in t.section_uses})
    refs = set(used[s0_tree]) | set(used[sstar_tree]) | set(edited)
    rows = [
        UsageRow(
            ref=ref,
            s0=used[s0_tree][ref] / totals[s0_tree] if totals[s0_tree] else None,
            sstar=used[sstar_tree][ref] / totals[sstar_tree] if totals[sstar_tree] else None,
        )
        for ref in refs
    ]
    return sorted(rows, key=lambda r: (-abs((r.sstar or 0) - (r.s0 or 0)), r.ref))


def _edited_refs(git: Git, result: str, skill_path: str, edits: Sequence[EditRow]) -> list[str]:
    """``file#section-id`` of the section each edit of the final patch targets in S* (an
    edit names its section by id or heading; usage records ids). Edits whose section cannot
    be told (a new section, a heading S* no longer has) are left out."""
    from toolkit.errors import SectionLookupError
    from toolkit.skill import SKILL_MD, find_section, parse_markdown

    files = sorted({e.file for e in edits if e.section})
    prefix = f"{skill_path.strip('/')}/" if skill_path else ""
    raws = git.read_objects([f"{result}:{prefix}{f}" for f in files])
    sections = {
        f: parse_markdown(raw.decode("utf-8", "replace"), frontmatter=f == SKILL_MD).sections
        for f, raw in zip(files, raws, strict=True)
        if raw is not None
    }
    refs = []
    for e in edits:
        if not e.section or e.file not in sections:
            continue
        try:
            refs.append(f"{e.file}#{find_section(sections[e.file], e.section).id}")
        except SectionLookupError:
            continue
    return list(dict.fromkeys(refs))


def _cost(calls: Sequence[LLMCallRecord]) -> list[CostRow]:
    by_model: dict[str, list[LLMCallRecord]] = defaultdict(list)
    for call in calls:
        by_model[call.model].append(call)
    out = []
    for model, rows in sorted(by_model.items()):
        tokens = TokenTally.of((r.tokens_in, r.tokens_out) for r in rows)
        cost = CostTally.of(r.cost_usd for r in rows)
        out.append(
            CostRow(
                model=model,
                calls=len(rows),
                cache_hits=sum(r.cache_hit for r in rows),
                tokens_in=tokens.tokens_in,
                tokens_out=tokens.tokens_out,
                tokens_unreported=tokens.unreported,
                cost_usd=cost.cost_usd,
                cost_unpriced=cost.unpriced,
            )
        )
    return out


def _file_changes(git: Git, base: str, result: str, skill_path: str) -> list[FileChange]:
    out = git.out("diff", "--numstat", "--no-renames", base, result, "--", skill_path or ".")
    rows = []
    for line in out.splitlines():
        added, removed, path = line.split("\t", 2)
        rows.append(
            FileChange(
                path=path,
                added=None if added == "-" else int(added),
                removed=None if removed == "-" else int(removed),
            )
        )
    return rows


def _edits(
    run_dir: Path, final_patch_id: str | None, missing: list[str]
) -> tuple[list[EditRow], list[str], list[MergeLine] | None]:
    merges = _read_lines(run_dir / "merges.jsonl", MergeLine, missing)
    ablations = _read_lines(run_dir / "ablations.jsonl", AblationLine, missing)
    if final_patch_id is None:
        missing.append("the final patch id (manifest `consolidate` counts `final_patch_id`)")
        return [], [], merges
    path = run_dir / "patches" / f"{final_patch_id}.json"
    try:
        patch = Patch.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        missing.append(f"`patches/{final_patch_id}.json` (the final patch): no per-edit table")
        return [], [], merges
    except ValidationError as exc:
        missing.append(
            f"`patches/{final_patch_id}.json` is not a patch ({exc.error_count()} errors)"
        )
        return [], [], merges
    support: dict[str, MergeEdit] = {}
    for line in merges or []:
        if line.patch_id == final_patch_id:
            support = {e.id: e for e in line.edits}
    if merges is not None and not support and len(set(patch.sources)) > 1:
        # The final patch is a merge, yet no line records it: each edit would show the
        # patch's whole support (a torn last line made every edit read support 8).
        missing.append(
            "`merges.jsonl` has no line for the final patch (a torn last line?): no per-edit "
            "support or consolidation summary"
        )
        return [], list(patch.changelog_entries), None
    effects: dict[tuple[str, str], Effect] = {}
    for a in ablations or []:
        effects[(a.edit_id, a.kind)] = effect_of(a)
    rows = []
    for edit in patch.edits:
        eid = edit.id or edit.content_hash()
        rows.append(
            _edit_row(
                edit,
                patch,
                support.get(eid),
                ablate=effects.get((eid, "ablate")),
                only=effects.get((eid, "only")),
            )
        )
    return rows, list(patch.changelog_entries), merges


def _edit_row(edit: Any, patch: Patch, merged: Any, **extra: Any) -> EditRow:
    """One edit of ``patch`` as the PR body's table shows it: its support and sources from
    ``merged`` (the merge record's entry for it) or else the patch's own."""
    return EditRow(
        id=edit.id or edit.content_hash(),
        file=edit.file,
        op=edit.op,
        section=edit.target_section,
        text=_excerpt(edit.content or edit.old_text or ""),
        support=merged.support if merged else patch.support,
        sources=merged.sources if merged else list(patch.sources),
        **extra,
    )


def _consolidation(manifest: Manifest, merges: list[MergeLine] | None) -> str | None:
    """The run's consolidation setting as the PR body names it (None: not recorded)."""
    stage = manifest.stages.get("consolidate")
    config = stage.config if stage else {}
    if config.get("consolidation") == "sequential":
        steps = config.get("steps") or len({m.step for m in merges or [] if m.step})
        return f"sequential (Seq-B={config.get('seq_batch')}, {steps} steps)"
    if config.get("merge_batch"):
        return f"parallel (B={config['merge_batch']}, L_max={config.get('max_levels')})"
    return None


def _sequential_edits(
    run_dir: Path, merges: list[MergeLine] | None, missing: list[str]
) -> tuple[list[EditRow], list[str]]:
    """The edits every step of a sequential consolidation merged (there is no final patch
    on S0: each step's edits apply to the skill the step before made), and their changelog."""
    rows: list[EditRow] = []
    changelog: list[str] = []
    for line in sorted((m for m in merges or [] if m.step and m.commit), key=lambda m: m.step or 0):
        path = run_dir / "patches" / f"{line.patch_id}.json"
        try:
            patch = Patch.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            missing.append(f"`patches/{line.patch_id}.json` (step {line.step}): its edits")
            continue
        support = {e.id: e for e in line.edits}
        changelog += [f"step {line.step}: {c}" for c in patch.changelog_entries]
        rows += [
            _edit_row(edit, patch, support.get(edit.id or edit.content_hash()), step=line.step)
            for edit in patch.edits
        ]
    return rows, changelog


def _excerpt(text: str, limit: int = 80) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def load_review(run_dir: str | Path, git: Git, *, skill_path: str | None = None) -> RunReview:
    """Read a run folder and the run's refs (through ``git``) into a :class:`RunReview`.

    Args:
        run_dir: the run folder (``runs/<run-id>``).
        git: plumbing of a repository that holds the run's refs (``refs/heads/t2s/<run>/``).
        skill_path: the skill folder in the repository (default: the manifest's
            ``skill_path``, else the folder with a SKILL.md that the run changed).

    Raises:
        ReviewError: no manifest, or the run has no base or result ref in ``git``.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise ReviewError(f"{run_dir} is not a run folder (no manifest.json)")
    run = manifest.run_id
    refs = {
        name.removeprefix(f"refs/heads/t2s/{run}/"): oid
        for name, oid in git.refs(f"refs/heads/t2s/{run}/").items()
    }
    if "base" not in refs:
        raise ReviewError(f"run {run!r} has no refs in {git.root} (t2s/{run}/base is missing)")
    result = refs.get("result") or _stage_count(manifest, "result_commit")
    if not result or git.resolve([f"{result}^{{commit}}"])[0] is None:
        from toolkit.evolve import no_result_reason

        why = no_result_reason(run_dir)
        raise ReviewError(f"run {run!r} has no result (t2s/{run}/result): {why}")
    base = refs["base"]
    path = _stage_config(manifest, "skill_path")
    if path is not None and Path(path).is_absolute():  # recorded as an absolute path
        try:
            path = Path(path).relative_to(_stage_config(manifest, "repo") or "/nowhere").as_posix()
        except ValueError:
            path = None
    path = path if path is not None else _infer_skill_path(git, base, result)
    if skill_path is not None and path is not None and skill_path.strip("/") != path.strip("/"):
        # Another skill's folder would give a body about a skill the run never touched.
        raise ReviewError(
            f"--skill-path {skill_path} is not the skill run {run!r} evolved: that is "
            f"{path.strip('/') or '.'} (leave --skill-path out)"
        )
    path = skill_path if skill_path is not None else path
    if path is None:
        raise ReviewError(f"cannot tell which skill run {run!r} evolved: pass --skill-path")
    path = path.strip("/")
    trees = git.resolve([f"{c}:{path}" if path else f"{c}^{{tree}}" for c in (base, result)])
    if trees[0] is None or trees[1] is None:
        raise ReviewError(f"{path!r} is not a folder in both the base and the result of {run!r}")
    missing: list[str] = []
    headline, outcomes = _headline(run_dir, trees[0], trees[1], missing)
    if headline is not None:
        scoring = scoring_options(_stage_config(manifest, "suite_source"))
        headline = headline.model_copy(update={"scoring": scoring})
    final_patch_id = _stage_count(manifest, "final_patch_id")
    consolidate = manifest.stages.get("consolidate")
    if consolidate is not None and consolidate.config.get("consolidation") == "sequential":
        merges = _read_lines(run_dir / "merges.jsonl", MergeLine, missing)
        edits, changelog = _sequential_edits(run_dir, merges, missing)
    else:
        edits, changelog, merges = _edits(run_dir, final_patch_id, missing)
    analyses = _read_lines(run_dir / "analyses.jsonl", AnalysisLine, missing)
    calls = _read_lines(run_dir / "llm_calls.jsonl", LLMCallRecord, missing)
    from toolkit.draft import creation_note

    return RunReview(
        run_id=run,
        run_dir=str(run_dir),
        creation=creation_note(run_dir),
        skill_path=path,
        skill_name=Path(path).name or git.root.name,
        base_commit=base,
        result_commit=result,
        final_patch_id=final_patch_id,
        consolidation=_consolidation(manifest, merges),
        headline=headline,
        outcomes=outcomes,
        edits=edits,
        changelog=changelog,
        analyses=dict(Counter(f"{a.analyst} {a.status}" for a in analyses or [])),
        merges=dict(Counter(m.status for m in merges or [])),
        merge_levels=max((m.level for m in merges or []), default=0),
        usage=(
            _usage(
                run_dir,
                headline,
                trees[0],
                trees[1],
                missing,
                edited=_edited_refs(git, result, path, edits),
            )
            if headline
            else []
        ),
        stages=[
            StageRow(name=t.name, status=t.status, seconds=t.seconds)
            for t in stage_times(manifest.stages)
        ],
        cost=_cost(calls or []),
        files=_file_changes(git, base, result, path),
        provenance_refs=sorted(r for r in refs if r.startswith(("patch/", "L", "seq/"))),
        missing=missing,
    )


# ---------------------------------------------------------------------------------------------
# The gate (pure)
# ---------------------------------------------------------------------------------------------


class Gate(BaseModel):
    """Whether the evidence supports opening the PR, and why not."""

    passed: bool
    reasons: list[str] = Field(description="Why it refuses (empty when it passes).")
    max_regressions: int


#: The gate's significance level for the exact McNemar test of S* against S0.
GATE_ALPHA = ALPHA


def check_gate(review: RunReview, max_regressions: int = 0) -> Gate:
    """S* must beat S0 (paired 95% CI above 0 and exact McNemar p < :data:`GATE_ALPHA`) and
    break at most ``max_regressions`` tasks.

    Both tests: a bootstrap interval of a few pairs can sit above 0 by chance (4 tasks, 3
    fixed: CI [+25, +100] pp while p = 0.25), which no reviewer should merge on.
    """
    reasons = []
    head = review.headline
    if head is None:
        reasons.append("no paired evaluation of S0 and S* in the run")
    elif head.paired.n == 0 or head.paired.ci.low <= 0:
        reasons.append(
            f"S* does not beat S0: S* - S0 = {_points(head.paired.difference)}, 95% CI "
            f"[{_points(head.paired.ci.low)}, {_points(head.paired.ci.high)}] includes or is "
            "below 0"
        )
    elif head.paired.p_value >= GATE_ALPHA:
        mde = head.paired.mde_conservative
        reasons.append(
            f"S* - S0 = {_points(head.paired.difference)} is not significant: exact McNemar "
            f"p = {head.paired.p_value:.3g} (needs < {GATE_ALPHA:g}) with {head.paired.n} "
            "paired tasks"
            + (f"; this n detects differences of {_points(mde)} or more" if mde else "")
            + ": evaluate on more test tasks"
        )
    broken = review.broken
    if len(broken) > max_regressions:
        reasons.append(
            f"S* breaks {len(broken)} task(s) S0 passed in every seed (at most "
            f"{max_regressions} allowed): {', '.join(t.task_id for t in broken[:5])}"
            + (" ..." if len(broken) > 5 else "")
        )
    return Gate(passed=not reasons, reasons=reasons, max_regressions=max_regressions)


# ---------------------------------------------------------------------------------------------
# The body (pure)
# ---------------------------------------------------------------------------------------------


class Links(BaseModel):
    """Where the body's links point (all optional)."""

    web_url: str | None = Field(default=None, description="The repository page.")
    branch: str | None = Field(default=None, description="The pushed result branch.")
    base: str | None = Field(default=None, description="The PR's base branch.")
    provenance_pushed: bool = False
    fetch_from: str = Field(
        default="origin", description="What `git fetch` names to fetch the pushed refs."
    )
    actions_run: str | None = Field(default=None, description="URL of the workflow run.")


def _text(value: object) -> str:
    """Model-written text made safe for a table cell: one line, no pipes, no @mentions."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|").replace("@", "@\u200b").replace("<", "&lt;")


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def _tokens(total: int, row: CostRow) -> str:
    """A token column's cell: the sum over the calls that reported, and how many did not."""
    value = None if row.tokens_unreported >= row.calls > 0 else total
    return describe_tokens(value, row.tokens_unreported, row.calls, "calls")


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} pp"


def _rate_row(name: str, rate: PassRate) -> str:
    return (
        f"| {name} | {_pct(rate.rate)} | [{_pct(rate.ci.low)}, {_pct(rate.ci.high)}] "
        f"| {rate.passed}/{rate.n} |"
    )


def _effect(effect: Effect | None) -> str:
    if effect is None or effect.effect is None:
        return "not measured"
    ci = (
        f" [{_points(effect.ci_low)}, {_points(effect.ci_high)}]"
        if effect.ci_low is not None and effect.ci_high is not None
        else ""
    )
    # n and p as the report gives them: +100 pp on 2 tasks is no evidence.
    p = f", p={effect.p_value:.3g}" if effect.p_value is not None else ""
    return f"{_points(effect.effect)}{ci} (n={effect.n}{p})"


def _capped(rows: Sequence[T]) -> tuple[Sequence[T], str]:
    if len(rows) <= MAX_ROWS:
        return rows, ""
    return rows[:MAX_ROWS], f"\n... and {len(rows) - MAX_ROWS} more (see the run folder)\n"


def _tasks_table(title: str, rows: Sequence[TaskOutcome], empty: str) -> list[str]:
    out = [f"### {title}", ""]
    if not rows:
        return [*out, empty, ""]
    shown, more = _capped(rows)
    out += ["| task | S0 passed | S* passed |", "|---|---|---|"]
    out += [
        f"| `{_text(t.task_id)}` | {t.s0_passed}/{t.seeds} | {t.sstar_passed}/{t.seeds} |"
        for t in shown
    ]
    return [*out, more, ""] if more else [*out, ""]


def render_title(review: RunReview) -> str:
    """The PR title: skill, run and the headline move."""
    head = review.headline
    move = f": {_pct(head.s0.rate)} -> {_pct(head.sstar.rate)}" if head else ""
    verb = "create" if review.creation else "evolve"
    return f"trace2skill: {verb} {review.skill_name} (run {review.run_id}){move}"


def render_body(
    review: RunReview, gate: Gate, links: Links | None = None, *, forced: bool = False
) -> str:
    """The pull request body in GitHub markdown (under GitHub's length limit).

    ``forced``: the PR is opened although the gate failed (``--force``); the body says so.
    """
    links = links or Links()
    run = review.run_id
    head = review.headline
    lines: list[str] = [
        MARKER.format(run=run),
        f"Skill **{_text(review.skill_path or review.skill_name)}** "
        f"{'created' if review.creation else 'evolved'} by trace2skill run "
        f"`{run}` from trajectories: S0 is the skill at `t2s/{run}/base` "
        f"(`{review.base_commit[:12]}`), S* the result at `t2s/{run}/result` "
        f"(`{review.result_commit[:12]}`)"
        + (f", made by {review.consolidation} consolidation." if review.consolidation else "."),
        *(["", _text(review.creation)] if review.creation else []),
        "",
        "## Scores",
        "",
    ]
    if head is None:
        lines += ["No paired evaluation of S0 and S* in this run: nothing to compare.", ""]
    else:
        p = head.paired
        seeds = ", ".join(str(s) for s in head.seeds)
        lines += [
            f"{head.suite} / {head.split}, model `{_text(head.model)}`, delivery "
            f"{head.delivery}, {head.tasks} tasks x seed(s) {seeds} = {p.n} paired runs.",
            "",
            "| skill | pass rate | 95% CI (bootstrap) | passed |",
            "|---|---|---|---|",
        ]
        if head.baseline is not None:
            lines.append(_rate_row("no skill", head.baseline))
        lines.append(_rate_row("S0 (before)", head.s0))
        if head.memory is not None:
            lines.append(_rate_row("S0 + memory (top-1 lesson, BM25)", head.memory))
        lines += [
            _rate_row("S* (after)", head.sstar),
            "",
            f"**S* - S0 = {_points(p.difference)}**, paired 95% CI "
            f"[{_points(p.ci.low)}, {_points(p.ci.high)}], exact McNemar p = {p.p_value:.3g}; "
            f"discordant runs: {p.only_b} fixed, {p.only_a} broken; "
            + (
                f"smallest difference this n detects: {_points(p.mde).lstrip('+')}."
                if p.mde is not None
                else "too few tasks for a minimum detectable effect."
            ),
            "",
        ]
    if gate.passed:
        lines += ["Gate: **passed** (paired CI above 0, regressions within the limit).", ""]
    elif forced:
        lines += ["Gate: **failed**; this pull request was opened anyway with `--force`:", ""]
        lines += [f"- {_text(r)}" for r in gate.reasons] + [""]
    else:
        lines += ["Gate: **failed** (the pull request opens only with `--force`):", ""]
        lines += [f"- {_text(r)}" for r in gate.reasons] + [""]
    if head is not None:
        lines += _tasks_table(
            "Tasks S* broke (S0 passed them in every seed)",
            review.broken,
            "None: S* keeps every task S0 passed in every seed.",
        )
        lines += _tasks_table("Tasks S* fixed (passed in every seed)", review.fixed, "None.")
    lines += ["## Edits", ""]
    if review.edits and any(e.step is not None for e in review.edits):
        shown, more = _capped(review.edits)
        lines += [
            "The edits of each step of the sequential consolidation, in order: each applies "
            "to the skill the step before made (there is no single patch on S0, so no "
            "per-edit effect). Support: the leaf patches of its step's batch that proposed "
            "the edit.",
            "",
            "| step | edit | file | op | section | text | support |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {e.step} | `{_text(e.id)}` | {_text(e.file)} | {e.op} "
            f"| {_text(e.section or '(file)')} | {_text(e.text)} "
            f"| {'?' if e.support is None else e.support} |"
            for e in shown
        ]
        lines += [more, ""] if more else [""]
    elif review.edits:
        shown, more = _capped(review.edits)
        lines += [
            f"The final patch `{review.final_patch_id}`. Support: the leaf patches (one per "
            "analysed trajectory) that proposed the edit. Effects (> 0: the edit helps), "
            "paired with 95% CIs: leave-one-out is S* minus S* without the edit; add-one-in "
            "is S0 with only the edit minus S0 (the report's names; `trace2skill ablate`).",
            "",
            "| edit | file | op | section | text | support | leave-one-out | add-one-in |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for e in shown:
            support = "?" if e.support is None else str(e.support)
            lines.append(
                f"| `{_text(e.id)}` | {_text(e.file)} | {e.op} | {_text(e.section or '(file)')} "
                f"| {_text(e.text)} | {support} | {_effect(e.ablate)} | {_effect(e.only)} |"
            )
        lines += [more, ""] if more else [""]
    else:
        lines += ["No per-edit table (see *Not shown* below).", ""]
    if review.changelog:
        lines += ["## Changelog", ""] + [f"- {_text(c)}" for c in review.changelog] + [""]
    if review.files:
        lines += ["## Files", "", "| file | added | removed |", "|---|---|---|"]
        lines += [
            f"| {_text(f.path)} | {'bin' if f.added is None else f'+{f.added}'} "
            f"| {'bin' if f.removed is None else f'-{f.removed}'} |"
            for f in review.files
        ] + [""]
    if review.usage:
        shown, more = _capped(review.usage)
        lines += [
            "## Section usage",
            "",
            "Share of evaluation trajectories that read, cited or echoed each section.",
            "",
            "| section | S0 | S* |",
            "|---|---|---|",
        ]
        lines += [f"| {_text(u.ref)} | {_pct(u.s0)} | {_pct(u.sstar)} |" for u in shown]
        lines += [more, ""] if more else [""]
    if review.analyses or review.merges:
        lines += ["## How the patches were made", ""]
        if review.analyses:
            lines += [
                f"- analyses: {', '.join(f'{n} {k}' for k, n in sorted(review.analyses.items()))}"
            ]
        if review.merges and any(e.step is not None for e in review.edits):
            lines += [
                "- consolidation: sequential, one merge per step: "
                + ", ".join(f"{n} {k}" for k, n in sorted(review.merges.items()))
            ]
        elif review.merges:
            lines += [
                f"- consolidation: {review.merge_levels} level(s), "
                + ", ".join(f"{n} {k}" for k, n in sorted(review.merges.items()))
            ]
        lines += [""]
    if review.stages or review.cost:
        lines += ["## Cost and time", ""]
        if review.stages:
            lines += ["| stage | status | wall time |", "|---|---|---|"]
            lines += [
                f"| {_text(s.name)} | {s.status} | "
                f"{'-' if s.seconds is None else f'{s.seconds:.0f} s'} |"
                for s in review.stages
            ] + [""]
        if review.cost:
            lines += [
                "| model | calls | cache hits | tokens in | tokens out | cost |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| `{_text(c.model)}` | {c.calls} | {c.cache_hits} | {_tokens(c.tokens_in, c)} "
                f"| {_tokens(c.tokens_out, c)} "
                f"| {CostTally.from_sum(c.cost_usd, c.calls, c.cost_unpriced).describe('calls')} |"
                for c in review.cost
            ] + [""]
            silent = sum(c.tokens_unreported for c in review.cost)
            if silent:
                lines += [
                    f"{silent} model call(s) came without token counts (the provider sent "
                    "no usage): the token columns leave them out.",
                    "",
                ]
            unpriced = sum(c.cost_unpriced for c in review.cost)
            if unpriced:
                lines += [
                    f"{unpriced} model call(s) have no known cost ({UNPRICED_WHY}): the cost "
                    "column leaves them out.",
                    "",
                ]
    lines += _review_steps(review, links)
    if review.missing:
        lines += ["## Not shown", ""] + [f"- {m}" for m in review.missing] + [""]
    body = "\n".join(lines).rstrip() + "\n"
    if len(body) > BODY_LIMIT:
        cut = body[: BODY_LIMIT - 200].rsplit("\n", 1)[0]
        body = cut + "\n\n... (cut to fit GitHub's limit; the run folder has everything)\n"
    return body


def _review_steps(review: RunReview, links: Links) -> list[str]:
    run = review.run_id
    path = review.skill_path
    skill_md = f"{path}/SKILL.md" if path else "SKILL.md"
    lines = ["## Review and reproduce", ""]
    if links.web_url and links.branch:
        lines.append(f"- Compare: {links.web_url}/compare/{links.base or 'main'}...{links.branch}")
    if links.actions_run:
        lines.append(f"- Workflow run (the run folder is its artifact): {links.actions_run}")
    fetch = (
        f"git fetch {quote(links.fetch_from)} 'refs/heads/t2s/{run}/*:refs/heads/t2s/{run}/*'"
        if links.provenance_pushed
        else f"trace2skill bundle import {review.run_dir}/refs.bundle  # every ref of the run"
    )
    lines += [
        "",
        "```sh",
        fetch,
        "# which patches and trajectories wrote a line of S*",
        f"trace2skill provenance {quote(str(skill_md))} --ref t2s/{run}/result "
        f"--run-dir {quote(str(review.run_dir))}",
        "# the consolidation, as git history",
        f"git log --graph --oneline t2s/{run}/base..t2s/{run}/result",
    ]
    head = review.headline
    if head is not None:
        proto = f" --protocol {head.protocol}" if head.protocol else ""
        lines += [
            "# the scores again, from the stored evaluations",
            f"trace2skill compare {quote(f'{review.run_dir}/{head.s0_eval}')} "
            f"{quote(f'{review.run_dir}/{head.sstar_eval}')} --model {head.model} "
            f"--seed {head.seeds[0]}" + proto,
        ]
        if head.suite in SUITES:  # a synthetic run's suite cannot be run again
            data = " --data TASKS.jsonl" if head.suite == "jsonl" else ""
            # The run's scoring rule: compare's default (exact) would score the answers
            # otherwise, and the run folder refuses finished tasks scored another way.
            data += "".join(f" --{k} {v}" for k, v in sorted(head.scoring.items()))
            lines += [
                "# or re-run both skills (tasks this same agent already ran are reused)",
                f"trace2skill compare t2s/{run}/base:{path} t2s/{run}/result:{path} "
                f"--suite {head.suite}{data} --split {head.split} --model {head.model} "
                f"--seed {head.seeds[0]} --delivery {head.delivery}{proto} "
                f"--run-dir {quote(str(review.run_dir))}",
            ]
    lines += ["```", ""]
    # No two blank lines in a row (the link lines above are optional).
    return [line for k, line in enumerate(lines) if line or (k and lines[k - 1])]


__all__ = [
    "BODY_LIMIT",
    "MARKER",
    "AblationLine",
    "AnalysisLine",
    "CostRow",
    "EditRow",
    "Effect",
    "FileChange",
    "Gate",
    "Headline",
    "Links",
    "MergeEdit",
    "MergeLine",
    "ReviewError",
    "RunReview",
    "StageRow",
    "TaskOutcome",
    "UsageRow",
    "check_gate",
    "load_review",
    "render_body",
    "render_title",
]
