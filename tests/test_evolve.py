"""evolve: the whole method through the fake model, in a temporary git repository."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.evolve_helpers import method_script
from tests.repo_helpers import git, user_state, wikitq_repo
from toolkit.cli import main
from toolkit.errors import LLMError, RepoError, SkillError
from toolkit.evolve import (
    STAGES,
    Budget,
    BudgetExceeded,
    EvolveConfig,
    EvolveError,
    Meter,
    NothingLearned,
    Rates,
    active_stages,
    check_request,
    check_resumable,
    estimate,
    evolve,
    evolve_lock,
    kept_patches,
    load_config,
    merge_count,
    merge_plan,
    parse_budget,
    plan,
)
from toolkit.llm import LLMConfig, fake_model
from toolkit.runs import read_jsonl_dicts, read_manifest
from toolkit.stats import pass_rate
from toolkit.tasks import TaskError, get_suite, reopen_suite
from toolkit.trajectory import read_trajectories

ROOT = Path(__file__).resolve().parents[1]
WIKITQ_GOLD = {t.question: t for t in get_suite("wikitq").load("all").tasks}


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def test_parse_budget_reads_any_subset_with_suffixes() -> None:
    assert parse_budget("calls=500,tokens=2M,minutes=1.5") == Budget(
        calls=500, tokens=2_000_000, minutes=1.5
    )
    assert parse_budget("tokens=30k") == Budget(tokens=30_000)
    assert parse_budget(None).unlimited and parse_budget("").unlimited
    assert parse_budget("tokens=1.5k") == Budget(tokens=1500)
    bad_items = ("calls", "dollars=3", "calls=lots", "minutes=0", "calls=-1", "calls=inf",
                 "tokens=1e400", "minutes=nan", "calls=1.5", "minutes=30,minutes=40")  # fmt: skip
    for bad in bad_items:
        with pytest.raises(EvolveError, match="budget"):
            parse_budget(bad)


@pytest.mark.parametrize(
    ("patches", "batch", "levels", "merges"),
    [(0, 5, 5, 0), (1, 5, 5, 0), (2, 5, 5, 1), (5, 5, 5, 1), (6, 5, 5, 3), (26, 5, 5, 9),
     (26, 5, 1, 1), (26, 2, 2, 14), (256, 8, 5, 37)],
)  # fmt: skip
def test_merge_count_follows_the_levels(patches: int, batch: int, levels: int, merges: int) -> None:
    # 26 with B=5: ceil(26/5)=6 groups, then 2, then 1; with L_max=1 level 1 is the final
    # merge (one); with B=2, L_max=2: 13 groups, then the final merge.
    assert merge_count(patches, batch, levels) == merges


@pytest.mark.parametrize("levels", [1, 2])
def test_merge_count_is_what_the_consolidation_does(
    repo: Path, tmp_path: Path, levels: int
) -> None:
    """The estimate took --max-levels L as L levels of groups and then a final merge; the
    consolidation makes level L the final merge (7 patches, B=2, L=1: 5 merges estimated,
    1 made)."""
    runs = repo.parent / "runs"
    result = CliRunner().invoke(
        main,
        ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
         "--model", "fake/rehearsal", "--evolve-limit", "7", "--test-limit", "1",
         "--error-analyst", "single", "--merge-batch", "2", "--max-levels", str(levels),
         "--run-id", "m", "--runs-dir", str(runs), "--no-progress",
         "--cache-dir", str(tmp_path / "cache")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    groups = read_jsonl_dicts(runs / "m" / "merges.jsonl")
    assert max(g["level"] for g in groups) == levels
    assert len(groups) == merge_count(kept_patches(runs / "m"), 2, levels)
    # The estimate's calls leave out the groups of one, passed up without a model call (7
    # patches, B=2: one of the 4 first-level groups; it counted a call for it).
    alone = sum(len(g["child_commits"]) == 1 for g in groups)
    assert (len(groups), alone) == merge_plan(kept_patches(runs / "m"), 2, levels)


def test_estimate_counts_stages_from_the_rates() -> None:
    config = EvolveConfig(run_id="r", skill=Path("s"), suite="wikitq")
    rates = Rates(steps_per_task=2, fail_rate=0.5, analyst_calls=3, tokens_per_call=100,
                  seconds_per_call=6)  # fmt: skip
    est = estimate(config, evolve_tasks=10, test_tasks=4, rates=rates, concurrency=1)
    by = {s.stage: s for s in est.stages}
    assert by["rollout"].calls == 20 and by["analyse"].units == 5 and by["analyse"].calls == 15
    assert by["consolidate"].units == 1 and by["eval-s0"].calls == 8
    assert est.calls == 20 + 15 + 1 + 8 + 8 and est.tokens == est.calls * 100
    assert by["rollout"].minutes == pytest.approx(20 * 6 / 60)
    single = estimate(
        config.model_copy(update={"error_analyst": "single"}), 10, 4, rates, concurrency=1
    )
    assert {s.stage: s.calls for s in single.stages}["analyse"] == 5
    # A resume's estimate: finished units (inf: a finished stage) are not counted again.
    left = estimate(config, 10, 4, rates, 1, finished={"rollout": math.inf, "analyse": 2})
    by = {s.stage: s for s in left.stages}
    assert left.left and by["rollout"].units == 0 and by["rollout"].calls == 0
    assert by["analyse"].units == 3 and by["analyse"].calls == 9 and by["eval-s0"].units == 4
    # Once the analyses are done, the patches they kept set the consolidation's plan.
    kept = estimate(config, 10, 4, rates, 1, finished={"analyse": math.inf}, patches=12)
    assert {s.stage: s.units for s in kept.stages}["consolidate"] == merge_count(12, 5, 5) == 4
    # Measured seconds per unit, where known, set the minutes (an analysis is no agent call).
    timed = rates.model_copy(update={"unit_seconds": {"analysis": 240.0, "task": 60.0}})
    by = {s.stage: s for s in estimate(config, 10, 4, timed, 2).stages}
    assert by["analyse"].minutes == pytest.approx(5 * 240 / 2 / 60)
    assert by["eval-s0"].minutes == pytest.approx(4 * 60 / 2 / 60)
    assert by["consolidate"].minutes == pytest.approx(1 * 6 / 60)  # calls x s per call


def test_meter_counts_only_new_uncached_calls(tmp_path: Path) -> None:
    log = tmp_path / "llm_calls.jsonl"
    line = {"tokens_in": 10, "tokens_out": 5, "cost_usd": 0.0, "cache_hit": False}
    log.write_text(json.dumps(line) + "\n")  # before the meter starts: not counted
    meter = Meter(log, Budget(calls=2))
    assert meter.exceeded() is None
    with log.open("a") as f:
        f.write(json.dumps(line) + "\n" + json.dumps({**line, "cache_hit": True}) + "\n")
        f.write('{"tokens_in": 3')  # a line being written: read next time
    spent = meter.read()
    assert (spent.calls, spent.cached, spent.tokens) == (1, 1, 15)
    with log.open("a") as f:
        f.write(', "tokens_out": 0}\n')
    assert meter.exceeded() == "calls 2/2"
    assert meter.read().tokens == 18


def test_lock_refuses_a_second_evolve_of_the_same_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    held = evolve_lock(run_dir)
    held.__enter__()
    try:
        with pytest.raises(EvolveError, match="already being evolved .*pid"), evolve_lock(run_dir):
            pass
    finally:
        held.__exit__(None, None, None)
    with evolve_lock(run_dir):  # released: free again
        pass


# ---------------------------------------------------------------------------------------------
# Runs through the fake model
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user repository holding the wikitq skill, committed."""
    return wikitq_repo(tmp_path / "repo")


def config_for(repo: Path, run_id: str = "r1", **overrides: Any) -> EvolveConfig:
    values: dict[str, Any] = {
        "run_id": run_id,
        "runs_dir": repo.parent / "runs",
        "skill": repo / "skills" / "wikitq-table-qa",
        "suite": "wikitq",
        "evolve_limit": 6,
        "test_limit": 4,
        "parallel": 1,
        # The scripted agent submits at once, as a json agent may (the default code
        # protocol sends an answer given before any code back once).
        "protocol": "json",
    }
    return EvolveConfig(**{**values, **overrides})


def llm(tmp_path: Path) -> LLMConfig:
    return LLMConfig(model="fake/echo", cache=False, cache_dir=tmp_path / "cache", max_retries=0)


def agent_turn(messages: list[dict[str, Any]], wrong: set[str]) -> dict[str, Any]:
    """The agent submits at once: the gold answer, or a wrong one for tasks in ``wrong``."""
    text = messages[1]["content"]
    task = next(t for q, t in WIKITQ_GOLD.items() if q in text)
    answer = "no idea" if task.id in wrong else "\n".join(task.answers)
    return {"thought": "answer", "cited_sections": [], "tool": "submit", "args": {"answer": answer}}


def train_ids(n: int = 6) -> list[str]:
    return [t.id for t in get_suite("wikitq").load("train", limit=n, seed=0).tasks]


def test_invalid_skill_is_refused_and_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    skill_md = repo / "skills" / "wikitq-table-qa" / "SKILL.md"
    skill_md.write_text(skill_md.read_text().replace("name: wikitq-table-qa", "name: Bad_Name"))
    git(repo, "commit", "-qam", "break the skill")
    with pytest.raises(SkillError, match="does not validate"):
        evolve(config_for(repo), llm_config=llm(tmp_path), progress=False)
    assert not (repo.parent / "runs" / "r1").exists()
    assert git(repo, "for-each-ref", "refs/heads/t2s") == ""


def test_dirty_skill_folder_is_refused_unless_allowed(repo: Path, tmp_path: Path) -> None:
    skill_md = repo / "skills" / "wikitq-table-qa" / "SKILL.md"
    skill_md.write_text(skill_md.read_text() + "\nA local note.\n")
    with pytest.raises(RepoError, match="uncommitted changes"):
        evolve(config_for(repo), llm_config=llm(tmp_path), progress=False)
    assert not (repo.parent / "runs" / "r1").exists()
    assert git(repo, "for-each-ref", "refs/heads/t2s") == ""
    # --estimate makes the same check, before it prints a plan (it printed one, exit 0).
    args = ["evolve", str(skill_md.parent), "--suite", "wikitq", "--runs-dir",
            str(repo.parent / "runs"), "--model", "fake/echo", "--estimate"]  # fmt: skip
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "uncommitted changes" in refused.output
    assert "estimate" not in refused.output
    assert CliRunner().invoke(main, [*args, "--allow-dirty"]).exit_code == 0


def test_existing_run_needs_resume_and_resume_needs_a_run(repo: Path, tmp_path: Path) -> None:
    wrong = set(train_ids()[:2])
    with fake_model(lambda m: agent_turn(m, wrong), name="evolve-exists") as model:
        config = config_for(repo, model=model)
        with pytest.raises(BudgetExceeded):
            evolve(config, llm_config=llm(tmp_path), budget=Budget(calls=1), progress=False)
        with pytest.raises(EvolveError, match="already exists.*--resume"):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        # While it runs, a new request is not told to resume it (which would be refused).
        with evolve_lock(config.run_dir), pytest.raises(EvolveError, match="being evolved"):
            check_request(config)
    stored = load_config(repo.parent / "runs" / "r1")
    assert stored is not None and stored.model == model and stored.evolve_limit == 6


def test_budget_stops_between_units_and_resume_finishes_the_stage(
    repo: Path, tmp_path: Path
) -> None:
    wrong = set(train_ids()[:2])
    run_dir = repo.parent / "runs" / "r1"
    with fake_model(lambda m: agent_turn(m, wrong), name="evolve-budget") as model:
        config = config_for(repo, model=model)
        server = llm(tmp_path).model_copy(update={"api_base": "http://me:pw@127.0.0.1:9/v1/"})
        with pytest.raises(BudgetExceeded, match="calls 3/3.*rollout") as stop:
            evolve(config, llm_config=server, budget=Budget(calls=3), progress=False)
        assert stop.value.stage == "rollout"
        assert len(read_trajectories(run_dir).records) == 3  # the units that ran are saved
        manifest = read_manifest(run_dir)
        assert manifest is not None
        assert manifest.stages["evolve"].status == "interrupted"
        assert manifest.stages["evolve"].counts["stages"]["rollout"]["calls"] == 3
        assert manifest.stages["evolve"].counts["stages"]["base"]["status"] == "done"
        calls_before = model.calls
        wider = config.model_copy(update={"parallel": 2, "seed": 9})
        # Two tasks start at once, before either has spent anything; the third finds the
        # budget spent. (calls=2 raced: the third started when the first of two had ended.)
        with pytest.raises(BudgetExceeded, match="calls 2/1.*rollout"):
            evolve(wider, llm_config=server, resume=True, budget=Budget(calls=1),
                   progress=False)  # fmt: skip
        assert model.calls - calls_before == 2  # only the tasks not done before
        assert len(read_trajectories(run_dir).records) == 5
        # A resume may run wider; the run's settings (its seed) stay as they were.
        stored = read_manifest(run_dir).stages["evolve"].config  # type: ignore[union-attr]
        assert (stored["parallel"], stored["seed"]) == (2, 0)
        # The run's server is stored without its password, and a resume that names none is
        # refused rather than sent to the provider's public endpoint (a trial's finding).
        assert stored["api_base"] == "http://me:***@127.0.0.1:9/v1" and stored["no_cache"]
        with pytest.raises(LLMError, match="password was not stored: give --api-base"):
            evolve(wider, llm_config=llm(tmp_path), resume=True, progress=False)
    stats = read_manifest(run_dir).stages["evolve"].counts["stages"]  # type: ignore[union-attr]
    assert stats["rollout"]["calls"] == 5


def test_cli_estimate_prints_and_writes_nothing(repo: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
         "--evolve-limit", "6", "--test-limit", "4", "--runs-dir", str(repo.parent / "runs"),
         "--model", "fake/echo", "--estimate"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "estimate: about" in result.output and "rollout" in result.output
    assert not (repo.parent / "runs").exists()


def test_reuse_of_a_run_on_other_data_is_refused_before_the_run_starts(
    repo: Path, tmp_path: Path
) -> None:
    """evolve --reuse of a run on other data (a JSONL file of the same task ids) was refused
    only at the rollout: the estimate had counted the other run's tasks as reusable, and the
    refused run left its folder and t2s/<run>/base behind, so its id was taken."""
    from tests.test_tasks_jsonl import write_jsonl

    rows = [{"id": f"q{i}", "question": f"{i} + {i}?", "answer": 2 * i,
             "split": "train" if i < 3 else "test"} for i in range(6)]  # fmt: skip
    write_jsonl(tmp_path / "a.jsonl", rows)
    write_jsonl(tmp_path / "b.jsonl", [{**r, "question": f"{r['question']}!"} for r in rows])
    source = tmp_path / "a-run"
    ran = CliRunner().invoke(
        main,
        ["eval", "--skill", "none", "--suite", "jsonl", "--data", str(tmp_path / "a.jsonl"),
         "--split", "all", "--model", "fake/echo", "--run-dir", str(source), "--no-cache",
         "--no-progress"],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    runs = repo.parent / "runs"
    for extra in (["--estimate"], []):
        refused = CliRunner().invoke(
            main,
            ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "jsonl",
             "--data", str(tmp_path / "b.jsonl"), "--model", "fake/echo", "--run-id", "b1",
             "--runs-dir", str(runs), "--no-cache", "--no-progress", "--reuse", str(source),
             *extra],
        )  # fmt: skip
        assert refused.exit_code == 1, refused.output
        assert "cannot reuse" in refused.output and "b.jsonl differ" in refused.output
        assert "estimate" not in refused.output and "Traceback" not in refused.output
        assert not (runs / "b1").exists() and git(repo, "for-each-ref", "refs/heads/t2s") == ""


def test_cli_bad_budget_and_resume_without_run_are_one_line_errors(repo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["evolve", "--resume"])
    assert result.exit_code == 1 and "needs --run-id" in result.output
    result = runner.invoke(main, ["evolve", "--resume", "--run-id", "nope", "--runs-dir",
                                  str(repo.parent / "runs")])  # fmt: skip
    assert result.exit_code == 1 and "no evolve run 'nope'" in result.output
    result = runner.invoke(main, ["evolve", "skills/x", "--suite", "wikitq", "--budget", "x=1"])
    assert result.exit_code == 1 and "bad budget item" in result.output
    (repo.parent / "plain").mkdir()
    plain = ["evolve", str(repo.parent / "plain"), "--suite", "wikitq", "--model", "fake/echo"]
    result = runner.invoke(main, [*plain, "--runs-dir", str(repo.parent / "runs")])
    assert result.exit_code == 1 and "\nrun " not in result.output  # refused before it starts
    assert "Traceback" not in result.output
    # --estimate refuses what the run would refuse, before anything is written.
    runs = str(repo.parent / "runs")
    for args, message in (
        (["evolve", str(repo / "nope"), "--suite", "wikitq"], "does not exist"),
        (["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
          "--run-id", "bad name/..x"], "invalid run id 'bad name/..x'"),
        (["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
          "--evolve-split", "all"], "S* would be scored on the tasks it learned from"),
        (["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
          "--evolve-split", "test"], "--evolve-split test and --test-split test share tasks"),
    ):  # fmt: skip
        result = runner.invoke(main, [*args, "--runs-dir", runs, "--estimate"])
        assert result.exit_code == 1 and message in result.output, result.output
        assert "estimate: about" not in result.output and not (repo.parent / "runs").exists()


# ---------------------------------------------------------------------------------------------
# The whole method
# ---------------------------------------------------------------------------------------------


def held_out_ids(n: int = 4) -> list[str]:
    return [t.id for t in get_suite("wikitq").load("test", limit=n, seed=0).tasks]


def method(name: str) -> Any:
    """The fake model playing every role; S0 fails 2 evolve and 2 test tasks, S* none."""
    wrong = set(train_ids()[:2]) | set(held_out_ids()[:2])
    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    return fake_model(method_script(gold, wrong), name=name)


def run_files(run_dir: Path) -> dict[str, str]:
    """The run's record files (what a resumed run must reproduce), timestamps left out."""
    out = {}
    for name in ("trajectories.jsonl", "evals/trajectories.jsonl"):
        ids = sorted(json.loads(line)["id"] for line in (run_dir / name).read_text().splitlines())
        out[name] = "\n".join(ids)
    analyses = [json.loads(line) for line in (run_dir / "analyses.jsonl").read_text().splitlines()]
    out["analyses"] = "\n".join(
        sorted(f"{a['id']} {a['status']} {a['patch_id']}" for a in analyses)
    )
    merges = [json.loads(line) for line in (run_dir / "merges.jsonl").read_text().splitlines()]
    out["merges"] = "\n".join(sorted(f"{m['level']} {m['group']} {m['patch_id']}" for m in merges))
    out["patches"] = " ".join(sorted(p.name for p in (run_dir / "patches").iterdir()))
    return out


def test_evolve_end_to_end(repo: Path, tmp_path: Path) -> None:
    before = user_state(repo)
    run_dir = repo.parent / "runs" / "r1"
    with method("evolve-e2e") as model:
        lines: list[str] = []
        summary = evolve(
            config_for(repo, model=model), llm_config=llm(tmp_path), progress=False,
            echo=lines.append,
        )  # fmt: skip
    assert lines[0] == f"run r1 in {run_dir}"
    stages = active_stages(config_for(repo))
    assert [line.split()[-1] for line in lines[1:]] == list(stages) and "eval-none" not in stages
    assert lines[1] == f"[1/{len(stages)}] base"
    # S0 failed 2 of 6 evolve tasks; two error analyses, both kept; one merge made S*.
    assert (summary.evolve.n, summary.evolve.passed) == (6, 4)
    # With its CI, as S0's and S*'s (it was always null: no CI for a paper table's column).
    evolve_ci = pass_rate([True] * 4 + [False] * 2, seed=0).ci
    assert (summary.evolve.ci_low, summary.evolve.ci_high) == (evolve_ci.low, evolve_ci.high)
    assert summary.analyses == {"total": 2, "kept": 2, "dropped": 0}
    assert summary.merges.get("merged") == 1 and summary.merges["levels"] == 1
    assert (summary.s0.passed, summary.result.passed, summary.s0.n) == (2, 4, 4)
    assert summary.difference == pytest.approx(0.5)
    assert sorted(summary.gained) == sorted(held_out_ids()[:2]) and summary.lost == []
    assert summary.top_edits and all(e.support == 1 for e in summary.top_edits)
    assert {s for e in summary.top_edits for s in e.sources} == {
        json.loads(line)["patch_id"]
        for line in (run_dir / "analyses.jsonl").read_text().splitlines()
    }
    assert list(summary.stages) == list(stages)
    assert all(summary.stages[s].status == "done" for s in stages)
    assert summary.no_skill is None and summary.s0_vs_no_skill is None
    assert summary.stages["rollout"].calls == 6 and summary.stages["analyse"].calls > 0
    assert json.loads((run_dir / "summary.json").read_text()) == summary.model_dump(mode="json")
    # The git story: base, two patch commits, one octopus merge = S*.
    log = git(repo, "log", "--format=%P|%s", "t2s/r1/base..t2s/r1/result").splitlines()
    assert len(log) == 3 and len(log[0].split("|")[0].split()) == 2
    skill = git(repo, "show", "t2s/r1/result:skills/wikitq-table-qa/SKILL.md")
    assert skill.count(" before answering.") == 2
    assert user_state(repo) == before  # the user's branch, index and files untouched
    manifest = read_manifest(run_dir)
    assert manifest is not None and manifest.stages["evolve"].status == "done"
    # The bundle holds every ref of the run and imports into a fresh repository.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    git(fresh, "fetch", "-q", str(run_dir / "refs.bundle"), "refs/heads/t2s/*:refs/heads/t2s/*")
    assert git(fresh, "rev-parse", "t2s/r1/result") == git(repo, "rev-parse", "t2s/r1/result")


def kill_at(monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """Make ``stage`` stop at its start as Ctrl-C or a SIGINT stops it there."""
    import toolkit.evolve as evolve_module

    def killed(_run: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(evolve_module._STAGE_FUNCS, stage, killed)


def test_evolve_says_how_many_rows_of_a_task_file_it_skipped(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.errors import ToolkitNotice

    data = tmp_path / "my.jsonl"
    rows = [{"id": f"q{i}", "question": f"{i}+1?", "answer": i + 1,
             "split": "train" if i < 2 else "test"} for i in range(3)]  # fmt: skip
    data.write_text("\n".join([*map(json.dumps, rows), '{"id": "bad"}']) + "\n")
    submit = {"thought": "", "cited_sections": [], "tool": "submit", "args": {"answer": "1"}}
    kill_at(monkeypatch, "analyse")  # the rollout is all this needs
    with fake_model(lambda _messages: submit, name="evolve-skipped") as model:
        config = config_for(
            repo, suite="jsonl", data=data, evolve_limit=None, test_limit=None, model=model
        )
        with pytest.warns(ToolkitNotice) as caught, pytest.raises(KeyboardInterrupt):
            evolve(config, llm_config=llm(tmp_path), progress=False)
    assert f"1 malformed row of {data} skipped" in " ".join(str(w.message) for w in caught)
    manifest = read_manifest(config.run_dir)
    assert manifest is not None and manifest.stages["rollout"].config["skipped_rows"] == 1


@pytest.mark.parametrize("stage", ["analyse", "consolidate", "eval-s0", "eval-result", "bundle"])
def test_kill_at_a_stage_boundary_resumes_without_redoing_work(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    import toolkit.evolve as evolve_module

    real = evolve_module._STAGE_FUNCS[stage]

    with method("evolve-kill") as model:
        config = config_for(repo, model=model)
        kill_at(monkeypatch, stage)
        with pytest.raises(KeyboardInterrupt):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        stats = read_manifest(config.run_dir).stages["evolve"].counts["stages"]  # type: ignore[union-attr]
        assert stats[stage]["status"] == "interrupted"
        # The resume's estimate is of the work left, at the rates the run's files show.
        left = plan(config, llm(tmp_path), resume=True)
        units = {s.stage: s.units for s in left.stages}
        order = [s for s in STAGES if s in units]
        assert left.left and left.rates.measured and left.rates.fail_rate == pytest.approx(2 / 6)
        assert "task" in left.rates.unit_seconds  # from the rollouts' own latencies
        assert all(units[s] == 0 for s in order if STAGES.index(s) < STAGES.index(stage))
        assert stage not in units or units[stage] > 0
        if stage == "consolidate":  # planned from the patches the analyses kept
            kept = kept_patches(config.run_dir)
            assert units[stage] == merge_count(kept, config.merge_batch, config.max_levels)
            turns = [r["turns"] for r in read_jsonl_dicts(config.run_dir / "analyses.jsonl")]
            assert left.rates.analyst_calls == pytest.approx(sum(turns) / len(turns), abs=0.01)
        calls_at_kill = model.calls
        monkeypatch.setitem(evolve_module._STAGE_FUNCS, stage, real)
        summary = evolve(config, llm_config=llm(tmp_path), resume=True, progress=False)
        resumed_calls = model.calls - calls_at_kill
        assert plan(config, llm(tmp_path), resume=True).calls == 0  # nothing left
    with method("evolve-kill") as model:
        whole = evolve(
            config_for(repo, "r2", model=model), llm_config=llm(tmp_path), progress=False
        )
        by_stage = {s: whole.stages[s].calls for s in whole.stages}
    # Only the stages from the killed one on made model calls again.
    stages = list(whole.stages)
    later = stages[stages.index(stage) :]
    assert resumed_calls == sum(by_stage[s] for s in later)
    assert (summary.s0.passed, summary.result.passed) == (whole.s0.passed, whole.result.passed)
    assert run_files(config.run_dir) == run_files(repo.parent / "runs" / "r2")
    tree = "t2s/{}/result^{{tree}}"
    assert git(repo, "rev-parse", tree.format("r1")) == git(repo, "rev-parse", tree.format("r2"))
    assert (config.run_dir / "refs.bundle").is_file()


def test_a_running_stage_saves_its_figures_for_a_run_killed_outright(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed session killed the real WikiTQ run with SIGKILL: no finally ran, and the 2.7
    hours its rollout had taken were lost from the stage's figures."""
    import toolkit.evolve as evolve_module

    monkeypatch.setattr(evolve_module, "HEARTBEAT_S", 0.05)
    real = evolve_module._STAGE_FUNCS["rollout"]
    seen: dict[str, Any] = {}

    def rollout_then_wait(run: Any) -> None:
        real(run)
        made = len((run.run_dir / "llm_calls.jsonl").read_text().splitlines())
        deadline = time.monotonic() + 10
        # A beat from before the last calls may be on disk; wait for one after them.
        while seen.get("calls") != made and time.monotonic() < deadline:
            time.sleep(0.02)
            manifest = read_manifest(run.run_dir)
            seen.update(manifest.stages["evolve"].counts["stages"]["rollout"])  # type: ignore[union-attr]
        # What a SIGKILL here leaves on disk is what the heartbeat wrote: nothing later runs.
        raise KeyboardInterrupt

    with method("evolve-heartbeat") as model:
        config = config_for(repo, model=model)
        monkeypatch.setitem(evolve_module._STAGE_FUNCS, "rollout", rollout_then_wait)
        with pytest.raises(KeyboardInterrupt):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        rollout_calls = model.calls
        assert seen["status"] == "running" and seen["wall_s"] > 0
        assert seen["calls"] == rollout_calls and seen["tokens_in"] > 0
        monkeypatch.setitem(evolve_module._STAGE_FUNCS, "rollout", real)
        summary = evolve(config, llm_config=llm(tmp_path), resume=True, progress=False)
    # The resume adds to the saved figures without counting the first call's work twice.
    assert summary.stages["rollout"].calls == rollout_calls
    assert summary.stages["rollout"].wall_s >= seen["wall_s"]


_TERMINATED_CHILD = """
import sys
from tests.evolve_helpers import method_script
from tests.test_evolve import WIKITQ_GOLD, train_ids
from toolkit.cli import main
from toolkit.llm import fake_model

gold = {t.id: t for t in WIKITQ_GOLD.values()}
with fake_model(method_script(gold, set(train_ids()[:2])), name="term", latency=0.3) as model:
    main([*sys.argv[1:], "--model", model], prog_name="trace2skill")
"""


def test_a_kill_stops_evolve_as_ctrl_c_does(repo: Path, tmp_path: Path) -> None:
    """SIGTERM (``timeout``, ``docker stop``, a CI cancel) ends the running stage as
    interrupted and prints how to resume; by default Python died at once mid-stage."""
    runs = repo.parent / "runs"
    args = [str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq", "--evolve-limit",
            "6", "--test-limit", "4", "--runs-dir", str(runs), "--run-id", "k1", "--parallel",
            "1", "--protocol", "json", "--no-progress", "--no-cache"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACE2SKILL_CACHE_DIR": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _TERMINATED_CHILD, "evolve", *args],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    trajectories = runs / "k1" / "trajectories.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        trajectories.exists() and trajectories.read_text().count("\n") >= 2
    ):
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 143, stderr  # 128 + SIGTERM, as shells report a kill
    assert "Terminated. Continue with: trace2skill evolve --resume --run-id k1" in stderr
    assert "was never awaited" not in stderr  # calls cut off mid-flight lose nothing
    manifest = read_manifest(runs / "k1")
    assert manifest is not None and manifest.stages["evolve"].status == "interrupted"
    rollout = manifest.stages["evolve"].counts["stages"]["rollout"]
    assert rollout["status"] == "interrupted" and rollout["calls"] >= 2


def test_ctrl_c_that_reaches_git_stops_evolve_as_interrupted(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C goes to the whole process group: a git merge-tree it stopped made consolidate
    fail ("Error: git merge.conflictStyle=diff3 failed: exit status -2", exit 1, the stage
    recorded failed) instead of stopping as interrupted with exit 130."""
    import signal
    import subprocess

    from toolkit.repo import plumbing

    real_run = subprocess.run

    def stopped_merge_tree(args: list[str], *rest: Any, **kwargs: Any) -> Any:
        # What a Ctrl-C to the process group does to git: it dies of SIGINT. (A PATH shim
        # was not seen by a Git object made before the test changed PATH: order-dependent.)
        if "merge-tree" in args:
            return subprocess.CompletedProcess(args, -signal.SIGINT, b"", b"")
        return real_run(args, *rest, **kwargs)

    runs = repo.parent / "runs"
    args = ["evolve", "--run-id", "c1", "--runs-dir", str(runs), "--no-progress",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    new = [str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq", "--model",
           "fake/rehearsal", "--evolve-limit", "2", "--test-limit", "2", "--error-analyst",
           "single"]  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(plumbing.subprocess, "run", stopped_merge_tree)
        stopped = CliRunner().invoke(main, [*args, *new])
    assert stopped.exit_code == 130, stopped.output
    assert "Interrupted. Continue with: trace2skill evolve --resume --run-id c1" in stopped.output
    assert "Error:" not in stopped.output
    manifest = read_manifest(runs / "c1")
    assert manifest is not None and manifest.stages["consolidate"].status == "interrupted"
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((runs / "c1" / "summary.json").read_text())["result_commit"]


def test_no_kept_analysis_stops_with_what_a_new_run_could_change(
    repo: Path, tmp_path: Path
) -> None:
    # fake/echo answers every call with its prompt: every task fails, every analysis is
    # an invalid reply. The run stops after analyse, naming what another run could change.
    config = config_for(
        repo, model="fake/echo", evolve_limit=2, error_analyst="single", protocol="code"
    )
    with pytest.raises(NothingLearned, match="no analysis passed the quality gate") as err:
        evolve(config, llm_config=llm(tmp_path), progress=False)
    assert "another --run-id) with a stronger --author-model or more evolve tasks may help" in str(
        err.value
    )
    assert err.value.exit_code == 5  # told apart from an error (1) by a CI job
    # A resume could only end the same way: refused before its estimate promises calls.
    with pytest.raises(NothingLearned, match="stopped after analyse: none of its 2 analyses"):
        check_resumable(config)
    # From the command line, exit 5 as the run's own end (it was 1: a CI job that resumes
    # went red where the run itself was "no PR this time").
    again = CliRunner().invoke(
        main, ["evolve", "--resume", "--run-id", "r1", "--runs-dir", str(config.runs_dir)]
    )
    assert again.exit_code == 5 and "Nothing learned: run 'r1' stopped after analyse" in (
        again.output
    ), again.output
    # A new evolve on the taken id is not told to resume it either.
    with pytest.raises(EvolveError, match="already exists .* none of its 2 analyses") as taken:
        check_request(config)
    assert "resume it" not in str(taken.value)
    # pr and report say the same, not "finish the evolution" / "resume it".
    run_dir = str(config.run_dir)
    for command in (["pr", run_dir, "--dry-run"], ["report", run_dir]):
        result = CliRunner().invoke(main, [*command, "--repo", str(repo)])
        assert result.exit_code == 1, result.output
        assert (
            "has no result (t2s/r1/result): it stopped after analyse: none of its 2 analyses "
            "passed the quality gate, and resuming redoes none of them. Start a new run with "
            "another --run-id"
        ) in result.output, result.output
    # provenance too (its bundle holds no result: importing it could not help).
    skill_md = str(config.skill / "SKILL.md")
    shown = CliRunner().invoke(
        main, ["provenance", f"{skill_md}:1", "--ref", "t2s/r1/result", "--run-dir", run_dir]
    )
    assert shown.exit_code == 1 and "none of its 2 analyses" in shown.output, shown.output
    assert "bundle import" not in shown.output


def test_no_failures_for_error_analysts_is_a_clear_stop(repo: Path, tmp_path: Path) -> None:
    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    with fake_model(method_script(gold, set()), name="evolve-allpass") as model:
        config = config_for(repo, model=model)
        with pytest.raises(
            NothingLearned, match="all 6 evolve tasks passed.*--analysts success.*another --run-id"
        ):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        # A kill trial: --resume was offered, redid nothing and stopped the same way, and the
        # advice to change --analysts cannot be taken on a resume.
        with pytest.raises(EvolveError, match="stopped after its rollout.*refs delete"):
            check_resumable(config)
        calls = model.calls
        with pytest.raises(EvolveError, match="all 6 evolve tasks passed"):
            evolve(config, llm_config=llm(tmp_path), resume=True, progress=False)
        assert model.calls == calls  # the rollouts are kept, not redone
    assert len(read_trajectories(config.run_dir).records) == 6


def test_second_evolve_of_a_running_run_is_refused(repo: Path, tmp_path: Path) -> None:
    config = config_for(repo, model="fake/echo")
    with evolve_lock(config.run_dir), pytest.raises(EvolveError, match="already being evolved"):
        evolve(config, llm_config=llm(tmp_path), progress=False)
    assert git(repo, "for-each-ref", "refs/heads/t2s") == ""


def test_a_stopped_run_folder_resumes_in_another_clone(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: a run stopped by its budget had no refs.bundle (the last
    stage writes it), so its folder, uploaded by CI, could not be resumed elsewhere."""
    args = ["evolve", "skills/wikitq-table-qa", "--suite", "wikitq", "--evolve-limit", "6",
            "--test-limit", "4", "--runs-dir", "runs", "--run-id", "c2", "--parallel", "1",
            "--no-cache", "--protocol", "json", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    monkeypatch.chdir(repo)
    with method("evolve-elsewhere") as model:
        stopped = CliRunner().invoke(main, [*args, "--model", model, "--budget", "calls=8"])
    assert stopped.exit_code == 3, stopped.output
    assert (repo / "runs" / "c2" / "refs.bundle").is_file()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))  # t2s refs stay remote branches there
    shutil.copytree(repo / "runs" / "c2", clone / "runs" / "c2")
    monkeypatch.chdir(clone)
    again = ["evolve", "--resume", "--run-id", "c2", "--runs-dir", "runs", "--no-progress"]
    with method("evolve-elsewhere") as model:
        resumed = CliRunner().invoke(main, [*again, "--model", model, "--no-cache"])
    assert resumed.exit_code == 0, resumed.output
    assert "imported the run's refs from runs/c2/refs.bundle" in resumed.stderr
    assert git(clone, "rev-parse", "t2s/c2/result")
    other = tmp_path / "other"  # a clone given the folder without its bundle: told so
    git(tmp_path, "clone", "-q", str(repo), str(other))
    shutil.copytree(repo / "runs" / "c2", other / "runs" / "c2")
    (other / "runs" / "c2" / "refs.bundle").unlink()
    monkeypatch.chdir(other)
    lost = CliRunner().invoke(main, again)
    assert lost.exit_code == 1 and "has no refs of run 'c2'" in lost.output
    assert "has no refs.bundle: resume in the repository the run was made in" in lost.output


def test_cli_runs_stops_on_budget_and_resumes(repo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
            "--evolve-limit", "6", "--test-limit", "4", "--runs-dir", str(repo.parent / "runs"),
            "--run-id", "c1", "--parallel", "1", "--no-cache", "--protocol", "json",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    with method("evolve-cli") as model:
        server = ["--api-base", "http://127.0.0.1:9/v1/"]  # one the fake provider ignores
        stopped = runner.invoke(main, [*args, "--model", model, "--budget", "calls=4", *server])
        assert stopped.exit_code == 3, stopped.output
        assert "budget spent (calls 4/4) during stage rollout" in stopped.output
        assert "--resume --run-id c1" in stopped.output
        again = ["evolve", "--resume", "--run-id", "c1", "--no-progress", "--no-cache"]
        with evolve_lock(repo.parent / "runs" / "c1"):  # another process evolves it
            busy = runner.invoke(main, [*again, "--runs-dir", str(repo.parent / "runs")])
        assert busy.exit_code == 1 and "already being evolved" in busy.output
        assert "estimate" not in busy.output  # refused before the estimate
        done = runner.invoke(main, [*again, "--runs-dir", str(repo.parent / "runs")])
    assert done.exit_code == 0, done.output
    # The resume called the run's server (it went to the provider's public endpoint).
    stages = read_manifest(repo.parent / "runs" / "c1").stages  # type: ignore[union-attr]
    assert stages["analyse"].config["api_base"] == "http://127.0.0.1:9/v1"
    assert "estimate of what is left: about" in done.output
    assert "measured on this run: 1 calls per task" in done.output  # the json agent's one
    assert f"run c1 in {repo.parent / 'runs' / 'c1'}" in stopped.stderr
    assert f"resuming run c1 in {repo.parent / 'runs' / 'c1'}" in done.stderr
    assert "s/task" not in done.stderr  # no progress bars
    assert (
        "S* - S0 (paired): +0.50" in done.output and "result branch: t2s/c1/result" in done.output
    )
    # The evolve split's rate with its CI, as S0's and S*'s below it (it had a bare count).
    assert re.search(r"evolve split: S0 4/6 = 0\.67 \[0\.\d\d, 1\.00\]", done.output)
    assert "MDE at this n: " in done.output
    assert "support   1" in done.output
    # Each top edit shows its text: rows of one op and section looked identical.
    assert re.search(r"support +1 +append_to_section +SKILL.md > table-qa/pitfalls: - \w+ ",
                     done.output)  # fmt: skip
    assert "no skill" not in done.output
    # Settings are the run's: an option that would change one is refused, not ignored.
    changed = runner.invoke(
        main, [*again, "--runs-dir", str(repo.parent / "runs"), "--error-analyst", "single",
               "--seed", "0", "--suite", "wikitq", "--test-limit", "3", "--model", "fake/other",
               str(repo / "skills" / "wikitq-table-qa")],
    )  # fmt: skip
    assert changed.exit_code == 1 and "Traceback" not in changed.output
    assert "--test-limit (the run has 4); --error-analyst (the run has agentic); --model (the " \
        "run has " in changed.output  # fmt: skip
    assert "--seed" not in changed.output and "--suite" not in changed.output  # same values
    assert "--skill" not in changed.output  # the run's own skill folder, named again
    # A no-skill baseline added on resume: only eval-none calls the model; the summary shows it.
    before = json.loads((repo.parent / "runs" / "c1" / "summary.json").read_text())["stages"]
    with method("evolve-cli") as model:
        base = [*again, "--runs-dir", str(repo.parent / "runs"), "--no-skill-baseline"]
        added = runner.invoke(main, [*base, "--model", model])
    assert added.exit_code == 0, added.output
    assert "[7/9] eval-none" in added.stderr and "[6/9] eval-result" not in added.stderr
    assert re.search(r"^  eval-none +4 units", added.stderr, re.M)  # in the estimate
    after = json.loads((repo.parent / "runs" / "c1" / "summary.json").read_text())
    assert after["no_skill"]["n"] == 4 and after["s0_vs_no_skill"]["n"] == 4
    assert after["stages"]["eval-none"]["calls"] > 0
    assert all(after["stages"][k]["calls"] == v["calls"] for k, v in before.items())
    assert re.search(r"no skill  \d/4 = ", added.output)
    assert "S0 - no skill (paired): " in added.output


def test_no_successes_for_success_analysts_is_a_clear_stop(repo: Path, tmp_path: Path) -> None:
    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    with fake_model(method_script(gold, set(gold)), name="evolve-allfail") as model:
        config = config_for(repo, model=model, analysts="success")
        with pytest.raises(
            EvolveError, match="none of the 6 evolve tasks passed.*--analysts error"
        ):
            evolve(config, llm_config=llm(tmp_path), progress=False)
    manifest = read_manifest(config.run_dir)
    assert manifest is not None and manifest.stages["evolve"].status == "failed"
    assert "rollout: none of the 6" in (manifest.stages["evolve"].error or "")


def test_model_files_name_the_embedded_weights() -> None:
    from toolkit.evolve import model_files
    from toolkit.llm.model_store import get_tier

    tier = get_tier("default")
    files = model_files(tier.model, "openai/gpt-4o-mini", tier.model)
    assert files == {tier.model: {"tier": "default", "file": tier.filename, "sha256": tier.sha256}}


def test_evolve_runs_on_the_users_own_task_file(repo: Path, tmp_path: Path) -> None:
    """``--suite jsonl --data FILE``: the CLI passed ``data`` twice and crashed (a new user's
    report); the run records the file and its scoring rule."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "question": f"{i} + {i}?",
                    "answer": str(2 * i),
                    "split": "train" if i < 3 else "test",
                }
            )
            + "\n"
            for i in range(5)
        )  # fmt: skip
    )
    runs = repo.parent / "runs"
    args = ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "jsonl", "--data",
            str(tasks), "--scoring", "numeric", "--runs-dir", str(runs), "--run-id", "own",
            "--model", "fake/echo", "--no-progress", "--no-cache"]  # fmt: skip
    estimate = CliRunner().invoke(main, [*args, "--estimate"])
    assert estimate.exit_code == 0, estimate.output
    assert "rollout" in estimate.output and not (runs / "own").exists()
    result = CliRunner().invoke(main, args)
    # fake/echo fails every task and writes no valid analysis: the run stops after analyse,
    # with its own exit status and no "Error:" (nothing went wrong; nothing was learned).
    # Its analysts found the tasks in the run's own file (they were all task-unknown).
    assert result.exit_code == 5, result.output
    assert "Nothing learned: no analysis passed the quality gate" in result.output
    assert "Error:" not in result.output
    assert "task-unknown" not in result.output and "invalid-reply" in result.output
    config = load_config(runs / "own")
    assert config is not None
    assert (config.suite, config.data, config.scoring) == ("jsonl", tasks, "numeric")
    assert len(read_trajectories(runs / "own" / "trajectories.jsonl").records) == 3
    source = read_manifest(runs / "own").stages["rollout"].config["suite_source"]  # type: ignore[union-attr]
    assert source == {"path": str(tasks.resolve()), "scoring": "numeric", "tolerance": 1e-06}
    suite = reopen_suite("jsonl", source)
    assert suite.load_ids(["q4"])[0].answers == ["8"]
    tasks.rename(tmp_path / "moved.jsonl")  # a run folder copied to a machine without it
    with pytest.raises(TaskError, match="task file .* is not here: give it with --suite jsonl"):
        reopen_suite("jsonl", source)


def test_a_run_started_with_relative_paths_resumes_from_another_directory(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill trial: the skill path was stored as typed, relative to where the run started,
    so a resume from elsewhere said "skills/wikitq-table-qa does not exist"."""
    wrong = set(train_ids()[:2])
    monkeypatch.setenv("TRACE2SKILL_CACHE_DIR", str(tmp_path / "cache"))
    with fake_model(lambda m: agent_turn(m, wrong), name="evolve-cwd") as model:
        monkeypatch.chdir(repo)
        args = ["evolve", "skills/wikitq-table-qa", "--suite", "wikitq", "--evolve-limit",
                "6", "--test-limit", "4", "--runs-dir", "../my runs", "--run-id", "c1",
                "--model", model, "--protocol", "json", "--no-progress", "--no-cache",
                "--budget", "calls=2"]  # fmt: skip
        first = CliRunner().invoke(main, args)
        assert first.exit_code == 3, first.output
        # A path with a space is quoted in the command to paste (it read --runs-dir ../my runs).
        assert "--resume --run-id c1 --runs-dir '../my runs'" in first.output
        monkeypatch.chdir(tmp_path)
        resume = ["evolve", "--resume", "--run-id", "c1", "--runs-dir",
                  str(repo.parent / "my runs"), "--no-progress", "--budget", "calls=1"]  # fmt: skip
        again = CliRunner().invoke(main, resume)
    assert again.exit_code == 3, again.output  # went on until its new budget, no error
    assert len(read_trajectories(repo.parent / "my runs" / "c1").records) >= 3
    stored = load_config(repo.parent / "my runs" / "c1")
    assert stored is not None and stored.skill_dir == repo / "skills" / "wikitq-table-qa"


def test_a_stop_before_the_base_commit_says_nothing_was_kept(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill trial: a stop during base removed the run and then offered --resume of it."""
    kill_at(monkeypatch, "base")
    runs = repo.parent / "runs"
    out = CliRunner().invoke(
        main,
        ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq", "--runs-dir",
         str(runs), "--run-id", "b1", "--model", "fake/echo", "--no-progress"],
    )  # fmt: skip
    assert out.exit_code == 130, out.output
    assert "had not started (nothing was kept): run the same command again" in out.output
    assert "--resume" not in out.output and not (runs / "b1").exists()


def test_a_deleted_result_ref_is_named_with_how_to_restore_it(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill trial: with t2s/<run>/result deleted, a resume said the consolidation did not
    finish (it had; the run's bundle still held the ref)."""
    with method("evolve-refgone") as model:
        config = config_for(repo, model=model)
        kill_at(monkeypatch, "eval-result")
        with pytest.raises(KeyboardInterrupt):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        monkeypatch.undo()
        git(repo, "branch", "-q", "-D", "t2s/r1/result")
        with pytest.raises(EvolveError, match="though the consolidation finished.*bundle import"):
            evolve(config, llm_config=llm(tmp_path), resume=True, progress=False)


def test_a_stage_killed_outright_gets_the_calls_logged_after_its_last_save(
    tmp_path: Path,
) -> None:
    """A kill trial: after a SIGKILL in analyse the summary said 9 calls where the calls log
    held 17 (the figures were as the last 30 s heartbeat saved them)."""
    from toolkit.evolve import StageStats, _catch_up

    log = tmp_path / "llm_calls.jsonl"

    def line(end: float, cached: bool = False) -> str:
        record = {"tokens_in": 100, "tokens_out": 10, "cost_usd": 0.0, "cache_hit": cached,
                  "started_at": end - 1, "ended_at": end}  # fmt: skip
        return json.dumps(record) + "\n"

    log.write_text(line(1000.0) + line(1001.0))
    saved = log.stat().st_size
    with log.open("a") as f:  # after the last save: two calls and a cache hit, then the kill
        f.write(line(1040.0) + line(1050.0) + line(1051.0, cached=True) + '{"torn')
    stats = {
        "rollout": StageStats(status="done", calls=2, calls_log_offset=10, saved_at=900.0),
        "analyse": StageStats(status="running", calls=2, tokens_in=200, tokens_out=20,
                              wall_s=30.0, calls_log_offset=saved, saved_at=1030.0),
    }  # fmt: skip
    _catch_up(stats, log)
    analyse = stats["analyse"]
    assert (analyse.calls, analyse.cached, analyse.tokens_in) == (4, 1, 400)
    assert analyse.wall_s == pytest.approx(30.0 + 21.0)  # up to its last call
    assert analyse.status == "interrupted" and stats["rollout"].calls == 2  # others untouched


@pytest.mark.parametrize(
    ("author_api_base", "analyst_server"),
    [(None, "http://127.0.0.1:9/v1"), ("default", None), ("http://u:pw@127.0.0.1:8/v1", "x")],
)
def test_the_author_model_calls_its_own_server(
    repo: Path, tmp_path: Path, author_api_base: str | None, analyst_server: str | None
) -> None:
    """One --api-base served every model of an evolve: an agent on a local server and a
    hosted author model could not be combined (the author went to the agent's server)."""
    with method("evolve-agent-server") as model, method("evolve-author-server") as author:
        config = config_for(
            repo,
            model=model,
            author_model=author,
            evolve_limit=4,
            test_limit=2,
            author_api_base=author_api_base,
        )
        agent = llm(tmp_path).model_copy(update={"api_base": "http://127.0.0.1:9/v1/"})
        evolve(config, llm_config=agent, progress=False)
    stages = read_manifest(config.run_dir).stages  # type: ignore[union-attr]
    assert stages["rollout"].config["api_base"] == "http://127.0.0.1:9/v1"
    if analyst_server == "x":  # its own URL, the password not stored
        assert stages["analyse"].config["api_base"] == "http://u:***@127.0.0.1:8/v1"
        assert stages["consolidate"].config["api_base"] == "http://u:***@127.0.0.1:8/v1"
        assert stages["evolve"].config["author_api_base"] == "http://u:***@127.0.0.1:8/v1"
    else:
        assert stages["analyse"].config["api_base"] == analyst_server
        assert stages["consolidate"].config["api_base"] == analyst_server


def test_fake_rehearsal_carries_a_whole_evolve_from_the_command_line(
    repo: Path, tmp_path: Path
) -> None:
    """fake/echo stops every evolve at analyse: a CI job or the PR flow could not be tried
    end to end without a real model (a trial wrote its own in-process driver for it)."""
    runs = repo.parent / "runs"
    args = ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
            "--model", "fake/rehearsal", "--evolve-limit", "3", "--test-limit", "2",
            "--runs-dir", str(runs), "--no-progress",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    done = CliRunner().invoke(main, [*args, "--run-id", "reh", "--error-analyst", "single"])
    assert done.exit_code == 0, done.output
    diff = git(repo, "diff", "t2s/reh/base", "t2s/reh/result", "--", "skills")
    assert "+## Rehearsal" in diff and "fake/rehearsal" in diff
    summary = json.loads((runs / "reh" / "summary.json").read_text())
    assert summary["s0"]["passed"] == summary["result"]["passed"] == 0
    # A second run of the same condition takes the first's finished tasks (--reuse): the S0
    # rollouts and the S0 evaluation, matched by trajectory id, are copied, not run again.
    again = CliRunner().invoke(
        main, [*args, "--run-id", "reh3", "--error-analyst", "single", "--reuse", str(runs / "reh")]
    )
    assert again.exit_code == 0, again.output
    # Only the stages this run has: no eval-none without --no-skill-baseline.
    assert "--reuse holds finished tasks (not counted above): rollout 3, eval-s0 2\n" in (
        again.output
    )
    assert re.search(r"rollout +0 units +0 calls", again.output)  # the estimate knew
    stages = json.loads((runs / "reh3" / "summary.json").read_text())["stages"]
    for name in ("rollout", "eval-s0"):  # no model call, not even one the cache answered
        assert stages[name]["calls"] == stages[name]["cached"] == 0, stages[name]
    assert stages["analyse"]["cached"] > 0  # the analysts' calls are no trajectories
    for path in ("trajectories.jsonl", "evals/trajectories.jsonl"):
        ids = [json.loads(line)["id"] for line in (runs / "reh" / path).open()]
        assert sorted(json.loads(line)["id"] for line in (runs / "reh3" / path).open()) == sorted(
            ids
        )
    # The agentic analyst cannot pass the verifier without the answer: nothing learned.
    agentic = CliRunner().invoke(main, [*args, "--run-id", "reh2"])
    assert agentic.exit_code == 5 and "fix-not-passed" in agentic.output
    assert "--error-analyst single may help" in agentic.output


def test_a_resume_reuses_the_folders_the_run_started_with(repo: Path, tmp_path: Path) -> None:
    """A run started with --reuse forgot those folders: its resume without --reuse ran the
    S0 evaluation again (on the real WikiTQ run: 100 tasks, hours, that a folder held)."""
    runs = repo.parent / "runs"
    args = ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
            "--model", "fake/rehearsal", "--evolve-limit", "3", "--test-limit", "2",
            "--runs-dir", str(runs), "--no-progress", "--error-analyst", "single"]  # fmt: skip
    first = CliRunner().invoke(main, [*args, "--run-id", "src", "--cache-dir", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    source = runs / "src"
    # Its own cache: the budget counts only calls the cache did not answer.
    cache = ["--cache-dir", str(tmp_path / "b")]
    started = CliRunner().invoke(
        main, [*args, *cache, "--run-id", "again", "--reuse", str(source), "--budget", "calls=1"]
    )
    assert started.exit_code == 3, started.output  # stopped before its evaluations
    # The estimate of a new run reads the reused S0 tasks: all 3 rollouts failed there.
    assert "measured on the S0 tasks --reuse holds: " in started.output
    assert "100% of evolve tasks failing" in started.output
    config = json.loads((runs / "again" / "manifest.json").read_text())["stages"]["evolve"]
    assert config["config"]["reuse"] == [str(source.absolute())]
    resumed = CliRunner().invoke(
        main,
        ["evolve", "--resume", "--run-id", "again", "--runs-dir", str(runs), "--no-progress",
         *cache],
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert re.search(r"eval-s0 +0 units +0 calls", resumed.output)  # the estimate knew
    stages = json.loads((runs / "again" / "summary.json").read_text())["stages"]
    assert stages["eval-s0"]["calls"] == stages["eval-s0"]["cached"] == 0, stages["eval-s0"]
    # A recorded folder that is gone is named (its tasks not yet copied run again).
    shutil.rmtree(source)
    gone = CliRunner().invoke(
        main, ["evolve", "--resume", "--run-id", "again", "--runs-dir", str(runs), "--estimate"]
    )
    assert gone.exit_code == 0, gone.output
    assert f"the --reuse folder {source.absolute()} this run recorded is gone" in gone.output
    once = CliRunner().invoke(
        main, ["evolve", "--resume", "--run-id", "again", "--runs-dir", str(runs), *cache]
    )
    assert once.exit_code == 0, once.output
    assert once.output.count("this run recorded is gone") == 1


def test_a_resume_after_the_agent_changed(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade that changed the agent (its fingerprint, in every trajectory id), a
    resume of a finished run re-evaluated S0 in its summary stage (11 minutes of model time
    on the example run), and one with agent work left would have mixed two harnesses."""
    runs = repo.parent / "runs"
    args = ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
            "--model", "fake/rehearsal", "--evolve-limit", "3", "--test-limit", "2",
            "--runs-dir", str(runs), "--no-progress", "--error-analyst", "single"]  # fmt: skip
    done = CliRunner().invoke(main, [*args, "--run-id", "h", "--cache-dir", str(tmp_path / "a")])
    assert done.exit_code == 0, done.output
    stopped = CliRunner().invoke(
        main, [*args, "--run-id", "h2", "--budget", "calls=1", "--cache-dir", str(tmp_path / "b")]
    )
    assert stopped.exit_code == 3, stopped.output  # after its rollout
    evals = (runs / "h" / "evals" / "trajectories.jsonl").read_text()
    for module in ("toolkit.agent", "toolkit.rollout"):  # the agent a newer toolkit builds
        monkeypatch.setattr(f"{module}.agent_fingerprint", lambda agent: "0123456789ab")
    resume = ["evolve", "--resume", "--runs-dir", str(runs), "--no-progress",
              "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    again = CliRunner().invoke(main, [*resume, "--run-id", "h"])
    assert again.exit_code == 0, again.output
    assert (runs / "h" / "evals" / "trajectories.jsonl").read_text() == evals
    stages = json.loads((runs / "h" / "summary.json").read_text())["stages"]
    assert stages["summary"]["calls"] == stages["summary"]["cached"] == 0, stages["summary"]
    before = (runs / "h2" / "trajectories.jsonl").read_text()
    refused = CliRunner().invoke(main, [*resume, "--run-id", "h2"])
    assert refused.exit_code == 1, refused.output
    assert "was started by another agent harness" in refused.output
    assert "eval-s0, eval-result would run with another agent" in refused.output
    assert (runs / "h2" / "trajectories.jsonl").read_text() == before
    with pytest.raises(EvolveError, match="another agent harness"):  # the Python API too
        evolve(load_config(runs / "h2"), resume=True, progress=False)  # type: ignore[arg-type]


def test_nothing_learned_suggests_only_options_the_analysts_accept(
    repo: Path, tmp_path: Path
) -> None:
    """--analysts combined with no analysis kept suggested --error-analyst single, which
    combined refuses ("drop --error-analyst single")."""
    result = CliRunner().invoke(
        main,
        ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
         "--model", "fake/rehearsal", "--evolve-limit", "2", "--test-limit", "2",
         "--runs-dir", str(repo.parent / "runs"), "--no-progress", "--analysts", "combined",
         "--cache-dir", str(tmp_path / "cache")],
    )  # fmt: skip
    assert result.exit_code == 5 and "fix-not-passed" in result.output, result.output
    assert "--error-analyst single" not in result.output
    assert "a stronger --author-model or more evolve tasks may help" in result.output


def test_a_resume_s_estimate_counts_evaluations_that_failed_as_work_left(
    repo: Path, tmp_path: Path
) -> None:
    """An eval-s0 whose model calls all failed (a server down) was estimated as done on the
    resume ('eval-s0 0 units 0 calls'), which then ran it again: its tasks were counted by
    their trajectories, errors included, where the rollout's leave errors out."""
    from toolkit.llm import FaultKind

    held = {t.question for t in get_suite("wikitq").load("test", limit=4, seed=0).tasks}
    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    agent = method_script(gold, set(train_ids()[:2]))

    def server_down_for_the_test_tasks(messages: list[dict[str, Any]]) -> Any:
        asked = str(messages[1].get("content", "")) if len(messages) > 1 else ""
        return FaultKind.AUTH if any(q in asked for q in held) else agent(messages)

    with fake_model(server_down_for_the_test_tasks) as model:
        config = config_for(repo, model=model)
        with pytest.raises(Exception, match="failed on every one"):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        left = {s.stage: s.units for s in plan(config, llm(tmp_path), resume=True).stages}
    assert left["rollout"] == 0 and left["eval-s0"] == 4


def test_a_run_whose_analyses_all_hit_model_errors_resumes(repo: Path, tmp_path: Path) -> None:
    """The author's server was down for the whole analyse stage: the error said 'evolve
    --resume goes on by itself: the failed analyses run again', but the resume refused with
    'Nothing learned: none of its 3 analyses passed the quality gate' (exit 5)."""
    from toolkit.llm import FaultKind

    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    working = method_script(gold, set(train_ids()[:2]) | set(held_out_ids()[:2]))

    def author_down(messages: list[dict[str, Any]]) -> Any:
        system = str(messages[0].get("content", ""))
        return FaultKind.AUTH if "analyst" in system else working(messages)

    with fake_model(author_down, name="evolve-author-down") as model:
        config = config_for(repo, model=model)
        with pytest.raises(Exception, match="failed on every one of the 2 analyses"):
            evolve(config, llm_config=llm(tmp_path), progress=False)
    again = ["evolve", "--resume", "--run-id", "r1", "--runs-dir", str(config.runs_dir),
             "--no-progress", "--no-cache", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    with fake_model(working, name="evolve-author-down"):
        resumed = CliRunner().invoke(main, again)
    assert resumed.exit_code == 0, resumed.output
    assert "analysing 2 trajectories again" in resumed.output


@pytest.mark.parametrize("stopped_at", ["eval-s0", "analyse"])
def test_a_resume_asks_for_the_author_s_password_only_while_the_author_has_work(
    repo: Path, tmp_path: Path, stopped_at: str
) -> None:
    """Found by a trial: a run made with --author-api-base http://alice:pw@... (stored as ***)
    and stopped at eval-s0, its analyses and merges done, was refused on resume after the
    estimate ('...whose password was not stored: give --author-api-base with it again'),
    though no author call was left. It is needed while analyse or consolidate has work, and
    then refused before the estimate."""
    from toolkit.llm import FaultKind

    gold = {t.id: t for t in get_suite("wikitq").load("all").tasks}
    working = method_script(gold, set(train_ids()[:2]) | set(held_out_ids()[:2]))
    held = {t.question for t in get_suite("wikitq").load("test", limit=4, seed=0).tasks}

    def agent(messages: list[dict[str, Any]]) -> Any:
        asked = str(messages[1].get("content", "")) if len(messages) > 1 else ""
        down = stopped_at == "eval-s0" and any(q in asked for q in held)
        return FaultKind.AUTH if down else working(messages)

    def author(messages: list[dict[str, Any]]) -> Any:
        return FaultKind.AUTH if stopped_at == "analyse" else working(messages)

    server = "http://alice:pw@127.0.0.1:8/v1"
    with (
        fake_model(agent, name="evolve-pw-agent") as model,
        fake_model(author, name="evolve-pw-author") as author_model,
    ):
        config = config_for(repo, model=model, author_model=author_model, author_api_base=server)
        with pytest.raises(Exception, match="failed on every one"):
            evolve(config, llm_config=llm(tmp_path), progress=False)
    stages = read_manifest(config.run_dir).stages["evolve"].counts["stages"]  # type: ignore[union-attr]
    assert stages[stopped_at]["status"] == "failed"
    again = ["evolve", "--resume", "--run-id", "r1", "--runs-dir", str(config.runs_dir),
             "--no-progress", "--no-cache", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    with (
        fake_model(working, name="evolve-pw-agent"),
        fake_model(working, name="evolve-pw-author") as author_model,
    ):
        resumed = CliRunner().invoke(main, again)
        if stopped_at == "analyse":  # refused before the estimate; the password goes on
            assert resumed.exit_code == 1 and resumed.output == (
                "Error: the run's author model used the server http://alice:***@127.0.0.1:8/v1, "
                "whose password was not stored: give --author-api-base with it again\n"
            )
            assert author_model.calls == 0
            resumed = CliRunner().invoke(main, [*again, "--author-api-base", server])
            assert author_model.calls > 0
        else:
            assert author_model.calls == 0
    assert resumed.exit_code == 0, resumed.output


def _user_tasks(path: Path) -> Path:
    """A user's task file with its own train/test split (4 + 2 tasks)."""
    rows = [
        {"id": f"q{i}", "question": f"How many cm in {i} inches?", "answer": round(2.54 * i, 2),
         "split": "train" if i < 4 else "test"}
        for i in range(6)
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_resume_from_another_directory_finds_the_task_file(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's finding: `evolve SKILL --suite jsonl --data data/t.jsonl`, stopped, then
    `evolve --resume --run-id r --runs-dir /abs/runs` from another directory stopped with
    "data file not found: data/t.jsonl" (the skill folder was found: its whole path is kept;
    the task file's was not). --data on a resume says where the same data is now; --suite
    and --scoring that would change the run are refused, no longer ignored in silence."""
    _user_tasks(repo / "data" / "t.jsonl")
    monkeypatch.chdir(repo)
    common = ["--model", "fake/rehearsal", "--no-progress", "--cache-dir", str(tmp_path / "c")]
    kill_at(monkeypatch, "analyse")
    stopped = CliRunner().invoke(
        main,
        ["evolve", "skills/wikitq-table-qa", "--suite", "jsonl", "--data", "data/t.jsonl",
         "--scoring", "numeric", "--error-analyst", "single", "--run-id", "r", *common],
    )  # fmt: skip
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.undo()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resume = ["evolve", "--resume", "--run-id", "r", "--runs-dir", str(repo / "runs"), *common]
    for changed, what in (
        (["--suite", "gsm8k"], "--suite (the run has jsonl)"),
        (["--suite", "jsonl", "--data", str(repo / "data" / "t.jsonl"), "--scoring", "exact"],
         "--scoring (the run has numeric)"),
    ):  # fmt: skip
        refused = CliRunner().invoke(main, [*resume, *changed, "--estimate"])
        assert refused.exit_code == 1 and what in refused.output, refused.output
    done = CliRunner().invoke(main, resume)
    assert done.exit_code == 0, done.output
    assert "S*  0/2" in done.output
    # The task file moved: --data names where the same data is now.
    moved = _user_tasks(tmp_path / "moved" / "t.jsonl")
    shutil.move(repo / "data", tmp_path / "gone")
    lost = CliRunner().invoke(main, [*resume, "--estimate"])
    assert lost.exit_code == 1 and "--suite jsonl --data PATH" in lost.output, lost.output
    found = CliRunner().invoke(main, [*resume, "--suite", "jsonl", "--data", str(moved)])
    assert found.exit_code == 0, found.output


def test_an_empty_split_is_refused_before_any_model_time(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's finding: a task file whose rows all say "split": "train" ran the rollouts,
    the analyses and the consolidation, then stopped at eval-s0 ("split 'test' of suite
    'jsonl' has no tasks"). The request is refused first, --estimate included, saying which
    splits the file has."""
    data = _user_tasks(tmp_path / "t.jsonl")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))
    monkeypatch.chdir(repo)
    args = ["evolve", "skills/wikitq-table-qa", "--suite", "jsonl", "--data", str(data),
            "--model", "fake/rehearsal", "--run-id", "e", "--no-progress",
            "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    for extra in (["--estimate"], []):
        out = CliRunner().invoke(main, [*args, *extra])
        assert out.exit_code == 1, out.output
        assert "split 'test' of suite 'jsonl' has no tasks" in out.output
        assert '(it has: train 6); mark rows with "split": "test"' in out.output
        assert "[2/8] rollout" not in out.output
    assert not (repo / "runs" / "e").exists()
    assert git(repo, "branch", "--list", "t2s/e/*") == ""


# ---------------------------------------------------------------------------------------------
# The retrieval memory baseline (toolkit.memory)
# ---------------------------------------------------------------------------------------------


def test_memory_baseline_is_a_stage_and_a_summary_row(repo: Path, tmp_path: Path) -> None:
    """--memory-baseline: the bank of the kept analyses, S0 plus each test task's top-1
    lesson by BM25, scored on S0's tasks and paired with S0 and S*; its tasks apart."""
    from toolkit.cli.evolve import summary_lines
    from toolkit.memory import MEMORY_FILE, read_bank

    lines: list[str] = []
    with method("evolve-memory") as model:
        config = config_for(repo, model=model, memory_baseline=True)
        summary = evolve(config, llm_config=llm(tmp_path), progress=False, echo=lines.append)
    stages = active_stages(config)
    assert [line.split()[-1] for line in lines[1:]] == list(stages)
    assert stages.index("eval-memory") == stages.index("eval-result") + 1  # no eval-none
    bank = read_bank(config.run_dir)
    kept = [a for a in read_jsonl_dicts(config.run_dir / "analyses.jsonl") if a["status"] == "kept"]
    assert len(bank.items) == len(kept) == 2 == summary.memory_items
    assert {i.analysis_id for i in bank.items} == {a["id"] for a in kept}
    # The lesson of each item is the text its analyst's patch added (the fake analyst's
    # "- <verb> <object> before answering."), which the fake agent follows when it reads it.
    assert all(i.content.endswith(" before answering.") for i in bank.items)
    assert summary.memory is not None and summary.memory.n == summary.s0.n == 4
    assert summary.memory.passed == 4  # every task shown a lesson answered right
    assert summary.memory_vs_s0 is not None and summary.memory_vs_s0.difference == 0.5
    assert summary.result_vs_memory is not None and summary.result_vs_memory.difference == 0.0
    assert summary.stages["eval-memory"].calls == 4 and summary.stages["eval-memory"].units == 4
    evaluated = read_trajectories(config.run_dir / "evals" / "trajectories.jsonl").records
    shown = [t for t in evaluated if "memory" in t.metadata]
    assert len(shown) == 4 and len(evaluated) == 12  # S0, S* and S0 + memory: 4 tasks each
    assert {t.id for t in shown}.isdisjoint(t.id for t in evaluated if "memory" not in t.metadata)
    for t in shown:
        assert t.skill_commit == t.metadata["memory"]["condition"]
        assert t.skill_commit.startswith("memory-")
        assert len(t.metadata["memory"]["items"]) == 1
        assert t.metadata["memory"]["items"][0] in {i.id for i in bank.items}
    text = "\n".join(summary_lines(summary, config.run_dir))
    assert re.search(r"^memory  4/4 = 1\.00 \[[\d.]+, [\d.]+\] \(S0 \+ the top-1 of 2 ", text, re.M)
    assert "memory - S0 (paired): +0.50" in text and "S* - memory (paired): +0.00" in text
    assert json.loads((config.run_dir / "summary.json").read_text())["memory"]["passed"] == 4
    # The report and the PR body show it beside S0 and S*.
    report = CliRunner().invoke(main, ["report", str(config.run_dir), "-o", "-"])
    assert report.exit_code == 0, report.output
    assert "| S0 + memory (top-1 lesson) | 100.0% |" in report.output
    assert "| S* - (S0 + memory) (paired) | +0.0 pp |" in report.output
    body = CliRunner().invoke(
        main, ["pr", str(config.run_dir), "--dry-run", "--github-repo", "o/n", "--force"]
    )
    assert "| S0 + memory (top-1 lesson, BM25) | 100.0% |" in body.output, body.output
    assert (config.run_dir / MEMORY_FILE).is_file()
    from toolkit.index import build_index, connect

    build_index(config.runs_dir)
    with connect(config.runs_dir) as con:
        row = con.execute("SELECT s0_drafted, memory_baseline FROM runs").fetchall()
    assert row == [(False, True)]


def test_memory_baseline_added_on_resume_redoes_no_work(repo: Path, tmp_path: Path) -> None:
    """evolve --resume --memory-baseline on a finished run: only eval-memory calls the
    model; every other stage's figures, trajectories and the S0 and S* evaluations stay."""
    runs = repo.parent / "runs"
    args = ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
            "--evolve-limit", "6", "--test-limit", "4", "--runs-dir", str(runs),
            "--run-id", "m1", "--parallel", "1", "--no-cache", "--protocol", "json",
            "--no-progress", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    runner = CliRunner()
    with method("evolve-memory-resume") as model:
        first = runner.invoke(main, [*args, "--model", model])
        assert first.exit_code == 0, first.output
        assert not re.search(r"^memory|eval-memory", first.output, re.M)
        assert not (runs / "m1" / "memory.jsonl").exists()
        before = json.loads((runs / "m1" / "summary.json").read_text())["stages"]
        s0_evals = sorted((runs / "m1" / "evals").iterdir())
        again = ["evolve", "--resume", "--run-id", "m1", "--runs-dir", str(runs), "--no-progress"]
        estimate = runner.invoke(main, [*again, "--memory-baseline", "--estimate"])
        assert re.search(r"^  eval-memory +4 units", estimate.stderr, re.M)
        calls = model.calls
        added = runner.invoke(main, [*again, "--memory-baseline"])
        assert added.exit_code == 0, added.output
        assert model.calls - calls == 4  # the 4 test tasks of S0 + memory, nothing else
    assert "[7/9] eval-memory" in added.stderr and "[6/9] eval-result" not in added.stderr
    after = json.loads((runs / "m1" / "summary.json").read_text())
    assert all(after["stages"][k]["calls"] == v["calls"] for k, v in before.items())
    assert after["stages"]["eval-memory"]["calls"] == 4 and after["memory"]["n"] == 4
    assert re.search(r"^memory  4/4 = ", added.output, re.M)
    new = sorted(set((runs / "m1" / "evals").iterdir()) - set(s0_evals))
    assert [p.name[:7] for p in new] == ["memory-"]  # its own eval folder
    config = load_config(runs / "m1")
    assert config is not None and config.memory_baseline
    # Nothing left: a second resume makes no call and keeps the figures.
    with method("evolve-memory-resume") as model:
        done = runner.invoke(main, [*again, "--model", model])
        assert done.exit_code == 0 and model.calls == 0, done.output
    assert json.loads((runs / "m1" / "summary.json").read_text())["memory"] == after["memory"]
