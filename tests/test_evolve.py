"""evolve: the whole method through the fake model, in a temporary git repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.repo_helpers import git
from toolkit.cli import main
from toolkit.errors import RepoError
from toolkit.evolve import (
    Budget,
    BudgetExceeded,
    EvolveConfig,
    EvolveError,
    Meter,
    Rates,
    estimate,
    evolve,
    evolve_lock,
    load_config,
    merge_count,
    parse_budget,
)
from toolkit.llm import LLMConfig, fake_model
from toolkit.rollout import read_manifest
from toolkit.tasks import get_suite
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
    for bad in ("calls", "dollars=3", "calls=lots", "minutes=0", "calls=-1"):
        with pytest.raises(EvolveError, match="budget"):
            parse_budget(bad)


@pytest.mark.parametrize(
    ("patches", "batch", "levels", "merges"),
    [(0, 5, 5, 0), (1, 5, 5, 0), (2, 5, 5, 1), (5, 5, 5, 1), (6, 5, 5, 3), (26, 5, 5, 9),
     (26, 5, 1, 7), (256, 8, 5, 37)],
)  # fmt: skip
def test_merge_count_follows_the_levels(patches: int, batch: int, levels: int, merges: int) -> None:
    # 26 with B=5: ceil(26/5)=6 groups, then 2, then 1; with L_max=1: 6, then the final merge.
    assert merge_count(patches, batch, levels) == merges


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
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    shutil.copytree(ROOT / "skills" / "wikitq-table-qa", root / "skills" / "wikitq-table-qa")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "skill")
    return root


def config_for(repo: Path, run_id: str = "r1", **overrides: Any) -> EvolveConfig:
    values: dict[str, Any] = {
        "run_id": run_id,
        "runs_dir": repo / "runs",
        "skill": repo / "skills" / "wikitq-table-qa",
        "suite": "wikitq",
        "evolve_limit": 6,
        "test_limit": 4,
        "parallel": 1,
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
    with pytest.raises(EvolveError, match="does not validate"):
        evolve(config_for(repo), llm_config=llm(tmp_path), progress=False)
    assert not (repo / "runs" / "r1").exists()
    assert git(repo, "for-each-ref", "refs/heads/t2s") == ""


def test_dirty_skill_folder_is_refused_unless_allowed(repo: Path, tmp_path: Path) -> None:
    skill_md = repo / "skills" / "wikitq-table-qa" / "SKILL.md"
    skill_md.write_text(skill_md.read_text() + "\nA local note.\n")
    with pytest.raises(RepoError, match="uncommitted changes"):
        evolve(config_for(repo), llm_config=llm(tmp_path), progress=False)
    assert not (repo / "runs" / "r1").exists()
    assert git(repo, "for-each-ref", "refs/heads/t2s") == ""


def test_existing_run_needs_resume_and_resume_needs_a_run(repo: Path, tmp_path: Path) -> None:
    wrong = set(train_ids()[:2])
    with fake_model(lambda m: agent_turn(m, wrong), name="evolve-exists") as model:
        config = config_for(repo, model=model)
        with pytest.raises(BudgetExceeded):
            evolve(config, llm_config=llm(tmp_path), budget=Budget(calls=1), progress=False)
        with pytest.raises(EvolveError, match="already exists.*--resume"):
            evolve(config, llm_config=llm(tmp_path), progress=False)
    stored = load_config(repo / "runs" / "r1")
    assert stored is not None and stored.model == model and stored.evolve_limit == 6


def test_budget_stops_between_units_and_resume_finishes_the_stage(
    repo: Path, tmp_path: Path
) -> None:
    wrong = set(train_ids()[:2])
    run_dir = repo / "runs" / "r1"
    with fake_model(lambda m: agent_turn(m, wrong), name="evolve-budget") as model:
        config = config_for(repo, model=model)
        with pytest.raises(BudgetExceeded, match="calls 3/3.*rollout") as stop:
            evolve(config, llm_config=llm(tmp_path), budget=Budget(calls=3), progress=False)
        assert stop.value.stage == "rollout"
        assert len(read_trajectories(run_dir).records) == 3  # the units that ran are saved
        manifest = read_manifest(run_dir)
        assert manifest is not None
        assert manifest.stages["evolve"].status == "interrupted"
        assert manifest.stages["evolve"].counts["stages"]["rollout"]["calls"] == 3
        assert manifest.stages["evolve"].counts["stages"]["base"]["status"] == "done"
        calls_before = model.calls
        with pytest.raises(BudgetExceeded, match="rollout"):
            evolve(config, llm_config=llm(tmp_path), resume=True, budget=Budget(calls=2),
                   progress=False)  # fmt: skip
        assert model.calls - calls_before == 2  # only the tasks not done before
        assert len(read_trajectories(run_dir).records) == 5
    stats = read_manifest(run_dir).stages["evolve"].counts["stages"]  # type: ignore[union-attr]
    assert stats["rollout"]["calls"] == 5


def test_cli_estimate_prints_and_writes_nothing(repo: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
         "--evolve-limit", "6", "--test-limit", "4", "--runs-dir", str(repo / "runs"),
         "--model", "fake/echo", "--estimate"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "estimate: about" in result.output and "rollout" in result.output
    assert not (repo / "runs").exists()


def test_cli_bad_budget_and_resume_without_run_are_one_line_errors(repo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["evolve", "--resume"])
    assert result.exit_code == 1 and "needs --run-id" in result.output
    result = runner.invoke(main, ["evolve", "--resume", "--run-id", "nope", "--runs-dir",
                                  str(repo / "runs")])  # fmt: skip
    assert result.exit_code == 1 and "no evolve run 'nope'" in result.output
    result = runner.invoke(main, ["evolve", "skills/x", "--suite", "wikitq", "--budget", "x=1"])
    assert result.exit_code == 1 and "bad budget item" in result.output
    assert "Traceback" not in result.output
