"""The run report: a readable markdown summary of what a run changed and why (PR body too).

Sections: scores of S0 and S* with CIs and the paired difference, the tasks S* fixed and the
ones it broke (a warning at the top when an average gain hides broken tasks: averages alone
let a test-gaming edit through), the top edits with support and ablation effects (and where
leave-one-out and add-one-in disagree), section usage of S0 vs S*, pruning candidates and
cost. Everything is read from the run folder and the skill repository; nothing runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from toolkit.atomic import write_atomic
from toolkit.attribution.ablation import AblationRecord, read_ablations
from toolkit.attribution.prune import PruneProposal, read_prune
from toolkit.attribution.run import (
    RunContext,
    held_out_split,
    load_version,
    open_run,
    read_jsonl_dicts,
    read_run_trajectories,
)
from toolkit.attribution.usage import SectionUsage, section_usage
from toolkit.cost import UNPRICED, UNPRICED_WHY, CostTally, format_cost
from toolkit.draft import creation_note
from toolkit.evaluate import (
    NO_SKILL,
    EvalError,
    EvalRecord,
    EvalResult,
    EvalSummary,
    pair_results,
    read_eval_lines,
)
from toolkit.known import unreported_text
from toolkit.llm.calls import line_cost, line_counts
from toolkit.memory import run_memory_condition
from toolkit.stats import clear_direction
from toolkit.tokens import TokenTally

REPORT_FILE = "report.md"
#: Broken tasks at or above this share of the fixed ones (or of all tasks) raise the warning.
BROKEN_WARNING_SHARE = 0.5
#: A gap between the add-one-in and leave-one-out effects at least this large is shown.
INTERACTION_GAP = 0.1


class ScoreLine(BaseModel):
    """S0 against S* on one split."""

    split: str
    n: int
    s0: EvalResult
    star: EvalResult
    difference: float | None
    ci: tuple[float, float]
    p_value: float
    fixed: list[str]
    broken: list[str]
    none: EvalResult | None = Field(
        None, description="No skill on the same split, suite, model and seed, if evaluated."
    )
    s0_vs_none: tuple[float, float, float, float] | None = Field(
        None, description="Paired S0 - no skill: difference, CI low, CI high, p-value."
    )
    memory: EvalResult | None = Field(
        None,
        description="S0 + the run's memory bank (the retrieval memory baseline, top-1 BM25) "
        "with S*'s suite, model, seed, delivery and protocol, if evaluated.",
    )
    star_vs_memory: tuple[float, float, float, float] | None = Field(
        None, description="Paired S* - (S0 + memory): difference, CI low, CI high, p-value."
    )


_Key = tuple[str, str, int, str, str]  # suite, model, seed, delivery, protocol


def _results(path: Path) -> dict[_Key, EvalResult]:
    """Per evaluation key of an eval file, the evaluation with the most tasks."""
    # Typed, as the PR reads it: a damaged line is an error, not a task silently missing
    # (which made the whole evaluation vanish from the report).
    records: dict[_Key, dict[str, EvalRecord]] = {}
    best: dict[_Key, EvalSummary] = {}
    for line in read_eval_lines(path):
        key = (line.suite, line.model, line.seed, line.delivery, line.protocol or "")
        if isinstance(line, EvalRecord):
            records.setdefault(key, {})[line.task_id] = line
        elif key not in best or line.n >= best[key].n:
            best[key] = line
    out = {}
    for key, summary in best.items():
        have = records.get(key, {})
        if all(t in have for t in summary.task_ids):
            out[key] = EvalResult(
                summary=summary, records=[have[t] for t in summary.task_ids], path=path
            )
    return out


def score_lines(run_dir: Path, s0_commit: str, star_commit: str) -> list[ScoreLine]:
    """S0 vs S* on every split both were evaluated on (same suite, model, seed, delivery)."""
    out = []
    condition = run_memory_condition(run_dir, s0_commit)
    for star_path in sorted((run_dir / "evals" / star_commit).glob("*.jsonl")):
        s0_path = run_dir / "evals" / s0_commit / star_path.name
        if not s0_path.is_file():
            continue
        a, b = _results(s0_path), _results(star_path)
        shared = [k for k in b if k in a]
        if not shared:
            continue
        key = max(shared, key=lambda k: min(a[k].n, b[k].n))
        none = _no_skill(run_dir / "evals" / NO_SKILL / star_path.name, key)
        baseline = None
        if none is not None:
            q = pair_results(none, a[key]).paired
            if q.difference is not None:
                baseline = (q.difference, q.ci.low, q.ci.high, q.p_value)
        memory_path = run_dir / "evals" / condition / star_path.name if condition else None
        memory = _results(memory_path).get(key) if memory_path and memory_path.is_file() else None
        versus_memory = None
        if memory is not None:
            q = pair_results(memory, b[key]).paired
            if q.difference is not None:
                versus_memory = (q.difference, q.ci.low, q.ci.high, q.p_value)
        comparison = pair_results(a[key], b[key])
        p = comparison.paired
        pass_a = {(r.task_id, r.seed): r.passed for r in a[key].records}
        pass_b = {(r.task_id, r.seed): r.passed for r in b[key].records}
        out.append(
            ScoreLine(
                split=star_path.stem,
                n=p.n,
                s0=a[key],
                star=b[key],
                difference=p.difference,
                ci=(p.ci.low, p.ci.high),
                p_value=p.p_value,
                fixed=[t for t, s in comparison.pairs if pass_b[(t, s)] and not pass_a[(t, s)]],
                broken=[t for t, s in comparison.pairs if pass_a[(t, s)] and not pass_b[(t, s)]],
                none=none,
                s0_vs_none=baseline,
                memory=memory,
                star_vs_memory=versus_memory,
            )
        )
    return out


def _no_skill(path: Path, key: _Key) -> EvalResult | None:
    """The no-skill evaluation at ``path`` with the suite, model, seed and protocol of ``key``
    (no skill has no delivery), the one with the most tasks; None when there is none."""
    if not path.is_file():
        return None
    found = [r for k, r in _results(path).items() if (*k[:3], k[4]) == (*key[:3], key[4])]
    return max(found, key=lambda r: r.n) if found else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _pp(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pp"


def _tasks(ids: Sequence[str], limit: int = 12) -> str:
    if not ids:
        return "none"
    shown = ", ".join(f"`{t}`" for t in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def score_warning(line: ScoreLine) -> str | None:
    """The at-a-glance warning when S* breaks many tasks S0 solved, else None."""
    broken, fixed = len(line.broken), len(line.fixed)
    if not broken:
        return None
    if broken >= BROKEN_WARNING_SHARE * max(fixed, 1) or broken >= 0.1 * line.n:
        if (line.difference or 0) > 0:
            average = f"an average gain of {_pp(line.difference)} hides them"
        else:
            average = f"the average moved {_pp(line.difference)}"
        return (
            f"**Warning ({line.split}): S* breaks {broken} task(s) that S0 solved** "
            f"(fixes {fixed}); {average}. Review the broken tasks before merging."
        )
    return None


def _interaction(ablate: AblationRecord | None, only: AblationRecord | None) -> str:
    # The two effects measure the edit in different company (with every other edit, with
    # none): a gap means the edit depends on the others, or they already cover it.
    if ablate is None or only is None or ablate.effect is None or only.effect is None:
        return ""
    gap = only.effect - ablate.effect
    disjoint = (
        ablate.effect_ci_high < only.effect_ci_low or only.effect_ci_high < ablate.effect_ci_low
    )
    if disjoint or abs(gap) >= INTERACTION_GAP:
        return f"interaction: add-one-in minus leave-one-out {_pp(gap)}"
    return ""


def _effect(record: AblationRecord | None) -> str:
    if record is None or record.effect is None:
        return "-"
    return (
        f"{_pp(record.effect)} [{100 * record.effect_ci_low:+.1f}, "
        f"{100 * record.effect_ci_high:+.1f}] (n={record.n})"
    )


def edit_table(context: RunContext, ablations: Sequence[AblationRecord]) -> list[str]:
    """Markdown rows: each ablated edit with support, both effects and their gap."""
    by = {(r.edit_id, r.kind): r for r in ablations if r.patch_id == context.final_patch.id}
    edits = [
        e for e in context.final_patch.edits if any((e.id, k) in by for k in ("ablate", "only"))
    ]
    if not edits:
        return ["No ablation yet: run `trace2skill ablate RUN`."]

    def support_of(edit_id: str | None) -> int:
        found = context.support.get(edit_id or "")
        return found.support if found else 0

    # Most supported first, as `ablate --top` chose them (ties keep the patch's order).
    edits.sort(key=lambda e: -support_of(e.id))
    rows = [
        "| edit | what | support | leave-one-out effect [95% CI] "
        "| add-one-in effect [95% CI] | note |",
        "|---|---|---|---|---|---|",
    ]
    for e in edits:
        ablate, only = by.get((e.id, "ablate")), by.get((e.id, "only"))
        what = f"{e.op} `{e.file}`" + (f" {e.target_section}" if e.target_section else "")
        notes = [_interaction(ablate, only)]
        if (
            ablate
            and ablate.effect is not None
            and ablate.effect < 0
            # CI below 0 and the exact test agreeing (a CI touching 0 is unclear)
            and clear_direction(ablate.effect_ci_low, ablate.effect_ci_high, ablate.p_value) < 0
        ):
            notes.append("harmful: S* is better without it")
        if ablate and ablate.also_removed:
            notes.append("removed with " + ", ".join(ablate.also_removed))
        support = support_of(e.id) if (e.id or "") in context.support else "-"
        rows.append(
            f"| `{e.id}` | {what} | {support} | {_effect(ablate)} "
            f"| {_effect(only)} | {'; '.join(n for n in notes if n)} |"
        )
    rows.append("")
    rows.append(
        "Effect = the edit's contribution in pass rate: S* minus S* without it (leave-one-out), "
        "S0 with only it minus S0 (add-one-in); paired on the same tasks and seeds."
    )
    return rows


def usage_table(rows: Sequence[SectionUsage], labels: Sequence[str] = ("S0", "S*")) -> list[str]:
    """Markdown rows: use of each section in S0 and S* (trajectories using it / all)."""
    table: dict[str, dict[str, SectionUsage]] = {}
    for row in rows:
        if row.version in labels:
            table.setdefault(row.ref, {})[row.version] = row
    if not table:
        return ["No trajectories of S0 or S* with a skill yet."]
    if not any(row.used for per in table.values() for row in per.values()):
        runs = {row.version: row.trajectories for row in rows if row.version in labels}
        counts = ", ".join(f"{v}: {n} trajectories" for v, n in runs.items())
        # A table of zeros says nothing; with the skill in the system prompt a small model
        # may never name or copy a section, and only `progressive` delivery records reads.
        return [
            f"No section was read, cited or echoed in these trajectories ({counts}). With the "
            "skill in the system prompt (`--delivery system`) use shows only when the model "
            "names a section or copies its lines; `--delivery progressive` records every read."
        ]
    head = "| section | " + " | ".join(f"{v} used" for v in labels)
    head += " | S* pass with / without |"
    out = [head, "|---|" + "---|" * (len(labels) + 1)]
    for ref, per in table.items():
        cells = []
        for v in labels:
            r = per.get(v)
            cells.append(
                "-" if r is None or not r.in_skill and not r.used else f"{r.used}/{r.trajectories}"
            )
        star = per.get("S*")
        split = f"{_pct(star.rate_with)} / {_pct(star.rate_without)}" if star else "-"
        out.append(f"| `{ref}` | " + " | ".join(cells) + f" | {split} |")
    return out


def _prune_lines(proposal: PruneProposal | None) -> list[str]:
    if proposal is None:
        return ["Not computed: run `trace2skill prune RUN`."]
    if not proposal.candidates:
        return [f"None: every section of S* was used in {proposal.trajectories} trajectories."]
    out = [
        f"{len(proposal.candidates)} section(s), {proposal.removed_lines} lines, proposed on "
        f"`{proposal.ref or 'not committed'}` (evidence: {proposal.trajectories} trajectories "
        f"of S*, delivery {', '.join(proposal.deliveries)}):",
        "",
    ]
    out += [
        f"- `{c.ref}` (lines {c.start_line}-{c.end_line}): {c.evidence}"
        for c in proposal.candidates
    ]
    return out


def _cost_lines(run_dir: Path) -> list[str]:
    calls = read_jsonl_dicts(run_dir / "llm_calls.jsonl")
    if not calls:
        return ["No model calls recorded."]
    tokens = TokenTally.of(line_counts(c) for c in calls)
    cost = CostTally.of(line_cost(c) for c in calls)
    seconds = sum(float(c.get("latency_s") or 0.0) for c in calls)
    hits = sum(bool(c.get("cache_hit")) for c in calls)
    counts = (
        f"{tokens.tokens_in:,} prompt + {tokens.tokens_out:,} completion tokens"
        if tokens.reported
        else "unknown tokens"
    )
    silent = unreported_text(tokens.unreported, len(calls), "calls")
    unpriced = unreported_text(cost.unpriced, len(calls), "calls", UNPRICED)
    return [
        f"{len(calls)} model calls ({hits} from the cache), {counts}"
        + (f" ({silent}: the provider sent no usage)" if silent else "")
        + f", {format_cost(cost.total)}"
        + (f" ({unpriced}: {UNPRICED_WHY})" if unpriced else "")
        + f", {seconds / 60:.1f} model minutes."
    ]


def render_report(
    run_dir: str | Path, *, repo: str | Path | None = None, skill_path: str | None = None
) -> str:
    """The markdown report of a run (see the module docstring)."""
    context, store = open_run(run_dir, repo=repo, skill_path=skill_path)
    try:
        s0, s0_commit = load_version(store, context, context.base)
        star, star_commit = load_version(store, context, context.result)
        versions = {s0_commit: ("S0", s0), star_commit: ("S*", star)}
    finally:
        store.close()
    damaged = None
    try:
        scores = score_lines(context.run_dir, s0_commit, star_commit)
    except EvalError as exc:
        scores, damaged = [], str(exc)
    # The evaluation tasks only: S0 also has rollouts (on the evolve split), S* does not, so
    # the shares compare the two skills on the same tasks (as the PR body and usage do).
    split = held_out_split(context.run_dir)
    evaluated = read_run_trajectories(context.run_dir, "eval")
    usage = section_usage(
        [t for t in evaluated if t.skill_commit in versions and t.split == split], versions
    )
    patch = context.final_patch
    out = [f"# trace2skill run `{context.run}`: skill `{star.name}`", ""]
    creation = creation_note(context.run_dir)
    if creation:
        out += [creation, ""]
    out += [w for w in (score_warning(s) for s in scores) if w]
    if any(score_warning(s) for s in scores):
        out.append("")
    out += [
        f"S0 `{context.base[:10]}` -> S* `{context.result[:10]}` (`{context.ref('result')}`), "
        f"final patch `{patch.id}`: {len(patch.edits)} edit(s) from {patch.support} "
        "leaf patch(es).",
        "",
        "## Scores",
        "",
    ]
    if damaged:
        out.append(
            f"Scores left out: {damaged}. Fix or delete that line; evaluating again redoes "
            "the tasks it held."
        )
    elif not scores:
        out.append("No evaluation of both S0 and S* on the same tasks yet.")
    for s in scores:
        a, b = s.s0.summary.pass_rate, s.star.summary.pass_rate
        out += [
            f"**{s.split}** ({s.star.summary.suite}, {s.star.summary.model}, seed "
            f"{s.star.summary.seed}, n={s.n}):",
            "",
            "| | pass rate | 95% CI |",
            "|---|---|---|",
            *(
                [
                    f"| No skill | {_pct(s.none.summary.pass_rate.rate)} | "
                    f"[{_pct(s.none.summary.pass_rate.ci.low)}, "
                    f"{_pct(s.none.summary.pass_rate.ci.high)}] |"
                ]
                if s.none is not None
                else []
            ),
            f"| S0 | {_pct(a.rate)} | [{_pct(a.ci.low)}, {_pct(a.ci.high)}] |",
            *(
                [
                    f"| S0 + memory (top-1 lesson) | {_pct(s.memory.summary.pass_rate.rate)} | "
                    f"[{_pct(s.memory.summary.pass_rate.ci.low)}, "
                    f"{_pct(s.memory.summary.pass_rate.ci.high)}] |"
                ]
                if s.memory is not None
                else []
            ),
            f"| S* | {_pct(b.rate)} | [{_pct(b.ci.low)}, {_pct(b.ci.high)}] |",
            f"| S* - S0 (paired) | {_pp(s.difference)} | "
            f"[{100 * s.ci[0]:+.1f}, {100 * s.ci[1]:+.1f}] pp, p={s.p_value:.3g} |",
            *(
                [
                    f"| S0 - no skill (paired) | {_pp(s.s0_vs_none[0])} | "
                    f"[{100 * s.s0_vs_none[1]:+.1f}, {100 * s.s0_vs_none[2]:+.1f}] pp, "
                    f"p={s.s0_vs_none[3]:.3g} |"
                ]
                if s.s0_vs_none is not None
                else []
            ),
            *(
                [
                    f"| S* - (S0 + memory) (paired) | {_pp(s.star_vs_memory[0])} | "
                    f"[{100 * s.star_vs_memory[1]:+.1f}, {100 * s.star_vs_memory[2]:+.1f}] pp, "
                    f"p={s.star_vs_memory[3]:.3g} |"
                ]
                if s.star_vs_memory is not None
                else []
            ),
            "",
            f"- Fixed by S* ({len(s.fixed)}): {_tasks(s.fixed)}",
            f"- Broken by S* ({len(s.broken)}): {_tasks(s.broken)}",
            "",
        ]
    out += ["## Edits", "", *edit_table(context, read_ablations(context.run_dir)), ""]
    out += ["## Changelog", ""]
    out += [f"- {entry}" for entry in patch.changelog_entries] or ["(none)"]
    out += ["", "## Section usage (S0 vs S*, evaluation tasks)", "", *usage_table(usage), ""]
    out += ["## Pruning candidates", "", *_prune_lines(read_prune(context.run_dir)), ""]
    out += ["## Cost", "", *_cost_lines(context.run_dir), ""]
    return "\n".join(out)


def write_report(
    run_dir: str | Path,
    *,
    repo: str | Path | None = None,
    skill_path: str | None = None,
    output: str | Path | None = None,
) -> Path:
    """Render the report and write it (default ``runs/<run>/report.md``); returns the path."""
    from toolkit.attribution.run import resolve_run_dir

    text = render_report(run_dir, repo=repo, skill_path=skill_path)
    path = Path(output) if output else resolve_run_dir(run_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, prefix=".report-", suffix="")
    return path
