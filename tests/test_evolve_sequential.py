"""evolve --consolidation sequential: the paper's Seq-B baselines through the fake model.

The skill is edited online: the analysed trajectories in a seeded order, in batches of B;
each batch is analysed against the skill the batches before made and merged into it, a
chain of refs ``t2s/<run>/seq/<step>`` whose last step is ``t2s/<run>/result``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.evolve_helpers import method_script
from tests.repo_helpers import git, user_state, wikitq_repo
from tests.test_evolve import config_for, held_out_ids, llm, train_ids
from toolkit.analysts.records import analysis_id
from toolkit.cli import main
from toolkit.consolidate.records import MergeRecord
from toolkit.consolidate.sequential import seeded_order
from toolkit.evolve import (
    EvolveConfig,
    NothingLearned,
    Rates,
    active_stages,
    check_resumable,
    estimate,
    evolve,
    plan,
)
from toolkit.llm import fake_model
from toolkit.repo import SkillRepo
from toolkit.repo.trailers import parse_trailers
from toolkit.runs import read_jsonl_dicts
from toolkit.tasks import get_suite
from toolkit.trajectory import read_trajectories

SKILL = "skills/wikitq-table-qa"
_TASK = re.compile(r"TASK \((\S+) ([^)]+)\)")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user repository holding the wikitq skill, committed."""
    return wikitq_repo(tmp_path / "repo")


@contextmanager
def seq_model(wrong: int) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """The fake model playing every role, failing the first ``wrong`` evolve tasks and two
    test tasks with S0; yields it and the analysts' prompts seen, as (task id, prompt text)."""
    failing = set(train_ids()[:wrong]) | set(held_out_ids()[:2])
    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    script = method_script(gold, failing)
    seen: list[tuple[str, str]] = []

    def recording(messages: list[dict[str, Any]]) -> Any:
        system = str(messages[0].get("content", "")) if messages[0]["role"] == "system" else ""
        if "You improve an agent's skill" in system or "error analyst" in system:
            text = "\n".join(str(m.get("content", "")) for m in messages)
            match = _TASK.search(text)
            if match and sum(m["role"] == "assistant" for m in messages) == 0:
                seen.append((match.group(2), text))  # an analysis' first call
        return script(messages)

    with fake_model(recording) as model:
        yield model, seen


def refs_of(repo: Path, run: str) -> dict[str, str]:
    out = git(
        repo, "for-each-ref", "--format=%(refname:short) %(objectname)", f"refs/heads/t2s/{run}"
    )
    return dict(line.split() for line in out.splitlines())


def parents(repo: Path, commit: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n", "1", commit).split()[1:]


def added_lines(repo: Path, before: str, after: str) -> list[str]:
    diff = git(repo, "diff", "-U0", before, after, "--", f"{SKILL}/SKILL.md")
    return [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def test_estimate_counts_the_sequential_steps_calls() -> None:
    config = EvolveConfig(
        run_id="r", skill=Path("s"), suite="wikitq", consolidation="sequential", seq_batch=4
    )
    assert active_stages(config) == (
        "base", "rollout", "sequential", "eval-s0", "eval-result", "summary", "bundle",
    )  # fmt: skip
    rates = Rates(steps_per_task=2, fail_rate=0.5, analyst_calls=3, tokens_per_call=100,
                  seconds_per_call=6)  # fmt: skip
    est = estimate(config, evolve_tasks=10, test_tasks=4, rates=rates, concurrency=2)
    by = {s.stage: s for s in est.stages}
    assert "analyse" not in by and "consolidate" not in by
    # 5 failures (agentic, 3 calls each) in steps of 4 and 1: 15 analysis calls, one merge
    # (a batch of one is taken as it is); steps run one after another, 2 analyses at once.
    assert (by["sequential"].units, by["sequential"].calls) == (2, 16)
    assert by["sequential"].tokens == 1600
    assert by["sequential"].minutes == pytest.approx((2 * 18 + 6 + 1 * 18) / 60)
    assert est.calls == 20 + 16 + 8 + 8
    # Seq-B=1 with the single-call analyst: 5 steps, 5 calls, no merge call.
    seq1 = config.model_copy(update={"seq_batch": 1, "error_analyst": "single"})
    by = {s.stage: s for s in estimate(seq1, 10, 4, rates, 1).stages}
    assert (by["sequential"].units, by["sequential"].calls) == (5, 5)
    # The git strategy merges a clean batch without the model: about half the calls.
    git_merge = config.model_copy(update={"seq_batch": 2, "merge_strategy": "git"})
    by = {s.stage: s for s in estimate(git_merge, 10, 4, rates, 1).stages}
    assert (by["sequential"].units, by["sequential"].calls) == (3, 15 + 1)
    # A resume's estimate leaves out the finished steps.
    left = estimate(config, 10, 4, rates, 2, finished={"rollout": math.inf, "sequential": 1})
    by = {s.stage: s for s in left.stages}
    assert by["rollout"].calls == 0 and (by["sequential"].units, by["sequential"].calls) == (1, 3)


def test_records_without_a_step_still_read() -> None:
    """merges.jsonl lines written before the sequential baseline read as parallel merges."""
    old = {"schema_version": 2, "level": 1, "group": "g0001", "children": ["a", "b"],
           "child_commits": ["c1", "c2"], "status": "merged"}  # fmt: skip
    assert MergeRecord.model_validate(old).step is None
    assert MergeRecord.model_validate({**old, "step": 3}).step == 3


# ---------------------------------------------------------------------------------------------
# Runs through the fake model
# ---------------------------------------------------------------------------------------------


def test_seq_b1_edits_the_skill_after_every_analysis(repo: Path, tmp_path: Path) -> None:
    before = user_state(repo)
    run_dir = repo.parent / "runs" / "r1"
    with seq_model(wrong=4) as (model, seen):
        config = config_for(
            repo, model=model, consolidation="sequential", seq_batch=1, error_analyst="single"
        )
        lines: list[str] = []
        summary = evolve(config, llm_config=llm(tmp_path), progress=False, echo=lines.append)
    stages = active_stages(config)
    assert [ln.split()[-1] for ln in lines if ln.startswith("[")] == list(stages)
    # Seq-B=1: one step per analysed trajectory (4 failures), each its own line.
    analyses = read_jsonl_dicts(run_dir / "analyses.jsonl")
    assert len(analyses) == 4 and sorted(a["step"] for a in analyses) == [1, 2, 3, 4]
    assert [ln.split()[1] for ln in lines if ln.startswith("  step")] == [
        "1/4:", "2/4:", "3/4:", "4/4:",
    ]  # fmt: skip
    merges = read_jsonl_dicts(run_dir / "merges.jsonl")
    assert [m["step"] for m in merges] == [1, 2, 3, 4]
    refs = refs_of(repo, "r1")
    chain = [refs[f"t2s/r1/seq/{k}"] for k in (1, 2, 3, 4)]
    assert refs["t2s/r1/result"] == chain[-1] == summary.result_commit
    # The chain: each step's first parent is the step before (S0 for the first), then the
    # batch's patch commit, which forks from that same skill.
    first_parents = git(repo, "rev-list", "--first-parent", "t2s/r1/result").split()
    assert first_parents[:5] == [*chain[::-1], refs["t2s/r1/base"]]
    by_step = {a["step"]: a for a in analyses}
    # Taken in the order the run's seed draws, whatever order the rollouts finished in.
    failed = [t for t in read_trajectories(run_dir).records if not t.passed]
    assert [by_step[k]["trajectory_id"] for k in (1, 2, 3, 4)] == seeded_order(failed, 0)
    assert seeded_order(failed[::-1], 0) == seeded_order(failed, 0)
    assert any(seeded_order(failed, seed) != seeded_order(failed, 0) for seed in (1, 2, 3))
    model_name = json.loads((run_dir / "manifest.json").read_text())["stages"]["evolve"]["config"][
        "model"
    ]
    for k, commit in enumerate(chain, start=1):
        previous = refs["t2s/r1/base"] if k == 1 else chain[k - 2]
        analysis = by_step[k]
        # Analysed against S_{k-1}: its id hashes that skill's tree, not S0's.
        tree = git(repo, "rev-parse", f"{previous}:{SKILL}").strip()
        assert analysis["id"] == analysis_id(
            analysis["trajectory_id"], "error-single", model_name, tree, 0
        )
        trailers = parse_trailers(git(repo, "log", "-1", "--format=%B", commit))
        assert trailers is not None and (trailers.kind, trailers.step) == ("seq", k)
        if analysis["status"] == "kept":
            patch = refs[f"t2s/r1/patch/{analysis['patch_id']}"]
            assert parents(repo, commit) == [previous, patch]
            assert parents(repo, patch) == [previous]
            assert trailers.sources == [analysis["patch_id"]] and trailers.support == 1
            assert merges[k - 1]["commit"] == commit and merges[k - 1]["status"] == "union"
        else:  # nothing kept: the skill is unchanged, the step still takes its place
            assert parents(repo, commit) == [previous] and merges[k - 1]["commit"] is None
    # Batch k+1's analyst saw S_k: its prompt holds the lessons step k merged.
    prompt_of = dict(seen)
    changed = 0
    for k in (1, 2, 3):
        previous = refs["t2s/r1/base"] if k == 1 else chain[k - 2]
        lessons = added_lines(repo, previous, chain[k - 1])
        changed += bool(lessons)
        assert all(line in prompt_of[by_step[k + 1]["task_id"]] for line in lessons)
        assert all(line not in prompt_of[by_step[k]["task_id"]] for line in lessons)
    assert changed >= 2  # the lessons reached the later analysts, not only an empty diff
    # The summary names the setting; S* passes the held-out tasks S0 failed.
    assert summary.consolidation.startswith("sequential, Seq-B=1: 4 steps")
    assert summary.merges["steps"] == 4 and "levels" not in summary.merges
    assert summary.top_edits and all(e.step in (1, 2, 3, 4) for e in summary.top_edits)
    assert (summary.s0.passed, summary.result.passed) == (2, 4)
    assert user_state(repo) == before
    # The PR body names it and lists each step's edits; per-edit attribution says why not.
    from toolkit.review import check_gate, load_review, render_body

    review = load_review(run_dir, SkillRepo.open(repo).git)
    body = render_body(review, check_gate(review))
    assert review.consolidation == "sequential (Seq-B=1, 4 steps)"
    assert "made by sequential (Seq-B=1, 4 steps) consolidation" in body
    assert "| step | edit |" in body and "t2s/r1/seq/1" not in review.missing
    assert "seq/1" in review.provenance_refs and not any("final patch" in m for m in review.missing)
    refused = CliRunner().invoke(main, ["support", str(run_dir), "--repo", str(repo)])
    assert refused.exit_code == 1 and "consolidated sequentially" in refused.output
    # A parallel consolidation of the same run folder is refused (the patches fork from
    # different steps).
    again = CliRunner().invoke(main, ["consolidate", str(run_dir), "--resume", "--repo", str(repo)])
    assert again.exit_code == 1 and "consolidated sequentially" in again.output, again.output


@pytest.mark.parametrize(
    ("analysts", "wrong", "kinds"),
    [
        ("error", 5, {"error-agentic"}),
        ("success", 1, {"success"}),
        ("combined", 2, {"error-agentic", "success"}),
    ],
)
def test_seq_b4_merges_each_batch_into_the_current_skill(
    repo: Path, tmp_path: Path, analysts: str, wrong: int, kinds: set[str]
) -> None:
    run_dir = repo.parent / "runs" / "r1"
    with seq_model(wrong=wrong) as (model, _seen):
        config = config_for(
            repo, model=model, consolidation="sequential", seq_batch=4, analysts=analysts
        )
        summary = evolve(config, llm_config=llm(tmp_path), progress=False)
    analyses = read_jsonl_dicts(run_dir / "analyses.jsonl")
    assert {a["analyst"] for a in analyses} == kinds
    steps = math.ceil(len(analyses) / 4)
    assert steps == 2 and summary.merges["steps"] == steps
    assert [sum(a["step"] == k for a in analyses) for k in (1, 2)] == [4, len(analyses) - 4]
    merges = read_jsonl_dicts(run_dir / "merges.jsonl")
    refs = refs_of(repo, "r1")
    first = merges[0]
    kept = sorted(a["patch_id"] for a in analyses if a["step"] == 1 and a["status"] == "kept")
    assert first["step"] == 1 and len(kept) >= 2
    # Four patches at once: the merge operator merged them (one model call), and support
    # is counted by the code from its citations: the step's trailers name the leaves.
    assert first["status"] == "merged" and first["attempts"] == 1
    trailers = parse_trailers(git(repo, "log", "-1", "--format=%B", first["commit"]))
    assert trailers is not None and trailers.sources == kept and trailers.support == len(kept)
    assert {s for e in first["edits"] for s in e["sources"]} <= set(kept)
    assert parents(repo, first["commit"])[0] == refs["t2s/r1/base"]
    assert sorted(parents(repo, first["commit"])[1:]) == sorted(
        refs[f"t2s/r1/patch/{p}"] for p in kept
    )
    assert refs["t2s/r1/result"] == refs["t2s/r1/seq/2"]
    assert summary.consolidation.startswith("sequential, Seq-B=4: 2 steps")


def test_a_budget_stop_mid_chain_resumes_without_redoing_a_step(repo: Path, tmp_path: Path) -> None:
    runs = repo.parent / "runs"
    args = ["evolve", "--run-id", "b1", "--runs-dir", str(runs), "--no-progress"]
    new = [str(repo / SKILL), "--suite", "wikitq", "--evolve-limit", "6", "--test-limit", "4",
           "--parallel", "1", "--protocol", "json", "--no-cache", "--error-analyst", "single",
           "--consolidation", "sequential", "--seq-batch", "1"]  # fmt: skip
    run_dir = runs / "b1"
    with seq_model(wrong=4) as (model, seen):
        # 6 rollout calls, then one call per step: the budget is spent after step 2.
        stopped = CliRunner().invoke(main, [*args, *new, "--model", model, "--budget", "calls=8"])
        assert stopped.exit_code == 3, stopped.output
        assert "budget spent (calls 8/8) during stage sequential, before step 3" in stopped.output
        refs = refs_of(repo, "b1")
        assert {"t2s/b1/seq/1", "t2s/b1/seq/2"} <= set(refs) and "t2s/b1/seq/3" not in refs
        assert "t2s/b1/result" not in refs
        merges_before = (run_dir / "merges.jsonl").read_text()
        analyses_before = (run_dir / "analyses.jsonl").read_text()
        assert merges_before.count("\n") == 2 and analyses_before.count("\n") == 2
        # The resume's estimate is of the steps left.
        from toolkit.evolve import load_config

        config = load_config(run_dir)
        assert config is not None and (config.consolidation, config.seq_batch) == (
            "sequential", 1,
        )  # fmt: skip
        left = {s.stage: s for s in plan(config, llm(tmp_path), resume=True).stages}
        assert (left["sequential"].units, left["sequential"].calls) == (2, 2)
        # A resume keeps the run's settings: another Seq-B is refused.
        changed = CliRunner().invoke(main, [*args, "--resume", "--seq-batch", "2"])
        assert changed.exit_code == 1 and "--seq-batch (the run has 1)" in changed.output
        analysed_before = len(seen)
        resumed = CliRunner().invoke(main, [*args, "--resume", "--model", model])
        assert resumed.exit_code == 0, resumed.output
        assert "consolidation: sequential, Seq-B=1: 4 steps" in resumed.output
    # Steps 1 and 2 were not redone: two analyses more (steps 3 and 4), lines appended.
    assert len(seen) - analysed_before == 2
    after = refs_of(repo, "b1")
    assert all(after[r] == refs[r] for r in refs if "/seq/" in r or "/patch/" in r)
    assert (run_dir / "merges.jsonl").read_text().startswith(merges_before)
    assert (run_dir / "analyses.jsonl").read_text().startswith(analyses_before)
    steps = [m["step"] for m in read_jsonl_dicts(run_dir / "merges.jsonl")]
    assert steps == [1, 2, 3, 4] and after["t2s/b1/result"] == after["t2s/b1/seq/4"]


def test_a_kill_between_a_step_commit_and_its_record_redoes_only_that_merge(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import toolkit.consolidate.sequential as sequential

    real = sequential.append_merges
    killed: list[int] = []

    def kill_at_step_two(run_dir: Path, records: list[MergeRecord]) -> None:
        if records[0].step == 2 and not killed:
            killed.append(2)
            raise KeyboardInterrupt  # after seq/2 was written, before its line
        real(run_dir, records)

    run_dir = repo.parent / "runs" / "r1"
    with seq_model(wrong=4) as (model, seen):
        config = config_for(
            repo, model=model, consolidation="sequential", seq_batch=1, error_analyst="single"
        )
        monkeypatch.setattr(sequential, "append_merges", kill_at_step_two)
        with pytest.raises(KeyboardInterrupt):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        written = refs_of(repo, "r1")["t2s/r1/seq/2"]
        analysed = len(seen)
        assert analysed == 2 and len(read_jsonl_dicts(run_dir / "analyses.jsonl")) == 2
        summary = evolve(config, llm_config=llm(tmp_path), resume=True, progress=False)
    # Step 2's analysis was kept, its merge made again: the same commit (a batch of one is
    # taken as it is, and commit ids are deterministic), one line per step.
    assert len(seen) - analysed == 2  # steps 3 and 4 only
    assert refs_of(repo, "r1")["t2s/r1/seq/2"] == written
    assert [m["step"] for m in read_jsonl_dicts(run_dir / "merges.jsonl")] == [1, 2, 3, 4]
    assert summary.result_commit == refs_of(repo, "r1")["t2s/r1/seq/4"]


def test_nothing_kept_in_any_step_is_a_dead_end(repo: Path, tmp_path: Path) -> None:
    # fake/echo answers every call with its prompt: every task fails, every analysis is an
    # invalid reply; every step leaves the skill as it was, and no S* is written.
    config = config_for(
        repo, model="fake/echo", evolve_limit=2, error_analyst="single", protocol="code",
        consolidation="sequential", seq_batch=1,
    )  # fmt: skip
    with pytest.raises(NothingLearned, match="no analysis passed the quality gate"):
        evolve(config, llm_config=llm(tmp_path), progress=False)
    refs = refs_of(repo, "r1")
    assert {"t2s/r1/seq/1", "t2s/r1/seq/2"} <= set(refs) and "t2s/r1/result" not in refs
    assert refs["t2s/r1/seq/2"] != refs["t2s/r1/base"]  # one commit per step, same tree
    assert git(repo, "rev-parse", "t2s/r1/seq/2^{tree}") == git(
        repo, "rev-parse", "t2s/r1/base^{tree}"
    )
    with pytest.raises(NothingLearned, match="none of its 2 analyses in 2 steps"):
        check_resumable(config)


def test_cli_checks_the_sequential_options(repo: Path) -> None:
    runner = CliRunner()
    base = ["evolve", str(repo / SKILL), "--suite", "wikitq", "--evolve-limit", "6",
            "--test-limit", "4", "--runs-dir", str(repo.parent / "runs"), "--model",
            "fake/echo"]  # fmt: skip
    zero = runner.invoke(main, [*base, "--consolidation", "sequential", "--seq-batch", "0"])
    assert zero.exit_code == 2 and "0 is not in the range x>=1" in zero.output
    alone = runner.invoke(main, [*base, "--seq-batch", "2", "--estimate"])
    assert alone.exit_code == 1 and "add --consolidation sequential" in alone.output
    tree = runner.invoke(
        main, [*base, "--consolidation", "sequential", "--merge-batch", "3", "--estimate"]
    )
    assert tree.exit_code == 1 and "--merge-batch shapes the parallel merge tree" in tree.output
    shown = runner.invoke(main, [*base, "--consolidation", "sequential", "--estimate"])
    assert shown.exit_code == 0, shown.output
    rows = [ln.split()[0] for ln in shown.output.splitlines() if ln.startswith("  ")]
    assert "sequential" in rows and "analyse" not in rows and "consolidate" not in rows
    assert not (repo.parent / "runs").exists()
    helped = runner.invoke(main, ["evolve", "--help"])
    assert "--consolidation [parallel|sequential]" in helped.output
    assert "Seq-B" in helped.output and "t2s/<run>/seq/<step>" in helped.output
