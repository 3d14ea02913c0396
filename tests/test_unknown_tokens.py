"""A provider that reports no token usage: counts are unknown (None / NULL), never 0.

Found in review: a server without ``usage`` (litellm then shows zeros) had every trajectory,
call record and summary store 0 tokens as if measured, the index hold 0, tokens per task
pulled down and ``evolve --budget tokens`` never stop. These runs go through the fake model
answering as such a server does (``fake_model(usage=False)``), end to end.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from tests.evolve_helpers import method_script
from tests.run_fixture import build_run
from toolkit.agent import AgentConfig
from toolkit.app import data
from toolkit.cli import main
from toolkit.cli.evolve import summary_lines
from toolkit.errors import ToolkitNotice
from toolkit.evaluate import EvalRecord, summarise
from toolkit.evolve import Budget, BudgetExceeded, EvolveConfig, Meter, evolve
from toolkit.index import build_index, connect, read_run
from toolkit.llm import LLMConfig, fake_model, read_calls
from toolkit.llm.calls import LLMCallRecord
from toolkit.queries import condition_rates, cost_by_model
from toolkit.repo import SkillRepo
from toolkit.review import check_gate, load_review, render_body
from toolkit.rollout import run_rollouts
from toolkit.tasks import get_suite
from toolkit.trajectory import Trajectory, append_jsonl, read_trajectories

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SKILL = ROOT / "skills" / "gsm8k-math"


def _llm(tmp_path: Path) -> LLMConfig:
    return LLMConfig(model="fake/echo", cache=False, cache_dir=tmp_path / "cache", max_retries=0)


def _submit(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A json agent that answers 3 times the number in the question at once."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    i = int(re.search(r"What is (\d+) times 3", user).group(1))  # type: ignore[union-attr]
    answer = str(3 * i)
    return {"thought": "", "cited_sections": [], "tool": "submit", "args": {"answer": answer}}


def _tasks(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "mine.jsonl"
    rows = [{"id": f"q{i}", "question": f"What is {i} times 3?", "answer": 3 * i} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _eval(runner: CliRunner, tasks: Path, run_dir: Path, model: str, *extra: str) -> str:
    args = ["eval", "--skill", "none", "--suite", "jsonl", "--data", str(tasks), "--split", "all"]
    args += ["--scoring", "numeric", "--model", model, "--no-cache", "--protocol", "json"]
    out = runner.invoke(main, [*args, "--run-dir", str(run_dir), "--no-progress", *extra])
    assert out.exit_code == 0, out.output
    return out.output


def test_an_evaluation_without_usage_stores_unknown_and_the_index_holds_null(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    tasks = _tasks(tmp_path)
    runner = CliRunner()
    with fake_model(_submit, usage=False) as silent, fake_model(_submit) as counted:
        shown = _eval(runner, tasks, runs / "silent", silent)
        _eval(runner, tasks, runs / "counted", counted)
    # What a user reads: not "0 tokens/task".
    assert "unknown (4 of 4 tasks unreported) tokens/task" in shown
    # Stored as unknown: trajectories, their steps, the calls log and the eval records.
    (trajectories,) = [read_trajectories(runs / "silent" / "evals").records]
    assert len(trajectories) == 4
    for t in trajectories:
        assert (t.tokens_in, t.tokens_out) == (None, None)
        assert all((s.tokens_in, s.tokens_out) == (None, None) for s in t.steps)
    raw = (runs / "silent" / "evals" / "trajectories.jsonl").read_text().splitlines()[0]
    assert '"tokens_in":null' in raw and '"schema_version":2' in raw
    calls = read_calls(runs / "silent")
    assert calls and all((c.tokens_in, c.tokens_out) == (None, None) for c in calls)
    assert all(c.tokens_estimate and c.tokens_estimate > 0 for c in calls)
    lines = [
        json.loads(x)
        for path in (runs / "silent" / "evals").glob("*/*.jsonl")
        for x in path.read_text().splitlines()
    ]
    assert [x["tokens"] for x in lines if x["kind"] == "task"] == [None] * 4
    (summary,) = [x for x in lines if x["kind"] == "summary"]
    assert (summary["tokens_per_task"], summary["tokens_unreported"]) == (None, 4)

    # The index: NULL, not 0, by the bulk path and by the line-by-line one alike.
    report = build_index(runs)
    assert sorted(report.read) == ["counted", "silent"] and not report.problems
    con = connect(runs)
    for table in ("trajectories", "steps", "llm_calls"):
        nulls = con.execute(
            f"SELECT run_id, count(*) FILTER (WHERE tokens_in IS NULL AND tokens_out IS NULL), "
            f"count(*) FILTER (WHERE tokens_in > 0) FROM {table} GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert nulls[0][0] == "counted" and nulls[0][1] == 0 and nulls[0][2] > 0, table
        assert nulls[1][0] == "silent" and nulls[1][1] > 0 and nulls[1][2] == 0, table
    assert con.execute(
        "SELECT count(*) FROM evals WHERE run_id = 'silent' AND tokens IS NULL"
    ).fetchone() == (4,)
    rows, _, _ = read_run(runs / "silent")  # no connection: the models read every line
    assert {(r["tokens_in"], r["tokens_out"]) for r in rows["trajectories"]} == {(None, None)}
    assert {(r["tokens_in"], r["tokens_out"]) for r in rows["steps"]} == {(None, None)}
    assert {(r["tokens_in"], r["tokens_out"]) for r in rows["llm_calls"]} == {(None, None)}
    by_model = {c.model: c for c in cost_by_model(con)}
    assert by_model[silent].tokens_unreported == by_model[silent].calls > 0
    assert by_model[silent].tokens_in == 0
    assert by_model[counted].tokens_unreported == 0 and by_model[counted].tokens_in > 0

    # The app says unknown where it showed 0.
    models = data.cost_by_model(con)
    assert data.total_tokens_text(models).endswith(
        f"({len(calls)} of {2 * len(calls)} calls unreported)"
    )
    stages = data.cost_by_stage(con, runs, ["silent"]).set_index("stage")
    assert stages.loc["eval", "tokens_unreported"] == len(calls)
    row = data.trajectory(con, trajectories[0].id, "silent")
    assert row is not None and data.tokens_text(row["tokens_in"], row["tokens_out"]) == "unknown"
    # The trajectories list says so too (it showed an empty cell where the detail said it).
    page = data.trajectories_page(con, data.TrajectoryFilter(), 0).set_index("run")
    assert set(page.loc["silent", "tokens"]) == {"unknown"}
    counted_tokens = page.loc["counted", "tokens"]
    assert all(text != "unknown" and int(text.replace(",", "")) > 0 for text in counted_tokens)
    assert list(page.columns)[list(page.columns).index("steps") + 1] == "tokens"
    conditions = {c.run_id: c for c in condition_rates(con)}  # the app's conditions page
    assert (conditions["silent"].tokens_per_task, conditions["silent"].tokens_unreported) == (
        None, 4
    )  # fmt: skip
    assert conditions["counted"].tokens_per_task and not conditions["counted"].tokens_unreported
    con.close()
    calls_out = runner.invoke(main, ["llm", "calls", str(runs / "silent")])
    n = len(calls)
    assert re.search(rf"tokens in\s+unknown \({n} of {n} calls unreported\)", calls_out.output)


def test_tokens_per_task_is_a_mean_over_the_tasks_that_reported() -> None:
    common = {"suite": "jsonl", "split": "all", "skill_commit": "none", "model": "m", "seed": 0,
              "delivery": "none", "passed": True, "score": 1.0, "seconds": 1.0}  # fmt: skip
    records = [
        EvalRecord(task_id=f"t{i}", trajectory_id=f"x{i}", tokens=tokens, **common)
        for i, tokens in enumerate([100, None, 300])
    ]
    s = summarise(records, suite="jsonl", split="all", skill="none", skill_commit="none",
                  model="m", seed=0, delivery="none", limit=None)  # fmt: skip
    assert (s.tokens_per_task, s.tokens_unreported) == (200, 1)  # not 400 / 3


def test_a_rollout_without_usage_says_so_and_the_token_budget_still_holds(
    tmp_path: Path,
) -> None:
    """The agent's per-task budget counted 0 for every call of such a server: it never ran
    out. It now counts each call at its estimate (its text, 4 characters a token)."""

    def loop(messages: list[dict[str, Any]]) -> dict[str, Any]:  # never submits
        return {"thought": "again", "cited_sections": [], "tool": "python",
                "args": {"code": "print(1)"}}  # fmt: skip

    agent = AgentConfig(protocol="json", max_turns=4, token_budget=200)
    for usage in (True, False):
        run_dir = tmp_path / f"usage-{usage}"
        with fake_model(loop, usage=usage) as model:
            summary = run_rollouts(
                "gsm8k", "test", GSM8K_SKILL, model, run_dir=run_dir, limit=2,
                llm_config=_llm(tmp_path), agent_config=agent, progress=False,
            )  # fmt: skip
        records = read_trajectories(run_dir).records
        # The skill in the system prompt is well over 200 tokens: one call spends the budget.
        assert [t.stop_reason for t in records] == ["token_budget"] * 2, usage
        assert all(len(t.steps) == 1 for t in records)
        assert summary.tokens_unreported == (0 if usage else 2)
        assert (summary.tokens_in > 0) == usage

    runner = CliRunner()
    shown = runner.invoke(main, ["trajectories", "show", str(tmp_path / "usage-False"),
                                 "--id", records[0].id])  # fmt: skip
    assert "in unknown / out unknown" in shown.output
    assert "the provider reported no usage for 1 of 1 replies" in shown.output
    args = ["rollout", "--suite", "gsm8k", "--split", "test", "--skill", str(GSM8K_SKILL),
            "--limit", "2", "--no-cache", "--cache-dir", str(tmp_path / "cache"),
            "--no-progress", "--protocol", "json"]  # fmt: skip
    guess = {"thought": "", "cited_sections": [], "tool": "submit", "args": {"answer": "0"}}
    with fake_model(lambda messages: guess, usage=False, name="silent-cli"):
        out = runner.invoke(main, [*args, "--run-dir", str(tmp_path / "cli"),
                                   "--model", "fake/silent-cli"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "in unknown / out unknown (2 of 2 trajectories unreported)" in out.output


def test_old_files_read_as_they_did(tmp_path: Path) -> None:
    """Version 1 records had no unknown count: an absent one was 0, and stays 0."""
    runs = tmp_path / "runs"
    run = runs / "old"
    shutil.copytree(ROOT / "runs" / "example-wikitq", run)
    line = json.loads((run / "trajectories.jsonl").read_text().splitlines()[0])
    assert line["schema_version"] == 1
    bare = {k: v for k, v in line.items() if k not in ("tokens_in", "tokens_out")}
    bare["steps"] = [
        {k: v for k, v in s.items() if k not in ("tokens_in", "tokens_out")} for s in line["steps"]
    ]
    bare["id"] = "bare-old-line"
    t = Trajectory.model_validate_json(json.dumps(bare))
    assert (t.tokens_in, t.tokens_out) == (0, 0) and {s.tokens_in for s in t.steps} == {0}
    with (run / "trajectories.jsonl").open("a") as f:
        f.write(json.dumps(bare) + "\n")
    call = {"schema_version": 1, "call_id": "old", "model": "m", "latency_s": 1.0,
            "started_at": 0.0, "ended_at": 1.0}  # fmt: skip
    assert (LLMCallRecord.model_validate(call).tokens_in, LLMCallRecord.model_validate(call)
            .tokens_out) == (0, 0)  # fmt: skip
    with (run / "llm_calls.jsonl").open("a") as f:
        f.write(json.dumps(call) + "\n")
    report = build_index(runs)
    assert report.read == ["old"]
    con = connect(runs)
    for table in ("trajectories", "steps", "llm_calls"):
        assert con.execute(
            f"SELECT count(*) FROM {table} WHERE tokens_in IS NULL OR tokens_out IS NULL"
        ).fetchone() == (0,), table
    assert con.execute(
        "SELECT tokens_in, tokens_out FROM trajectories WHERE id = 'bare-old-line'"
    ).fetchone() == (0, 0)
    assert con.execute("SELECT tokens_in FROM llm_calls WHERE call_id = 'old'").fetchone() == (0,)
    con.close()


def test_the_meter_counts_unreported_calls_at_their_estimate(tmp_path: Path) -> None:
    log = tmp_path / "llm_calls.jsonl"
    log.touch()
    meter = Meter(log, Budget(tokens=100))
    lines = [
        {"schema_version": 2, "tokens_in": 30, "tokens_out": 5},
        {"schema_version": 2, "tokens_in": None, "tokens_out": None, "tokens_estimate": 40},
        {"schema_version": 1},  # an old line without counts: 0, as it always read
        {"schema_version": 2, "cache_hit": True, "tokens_in": 0, "tokens_out": 0},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.warns(ToolkitNotice, match="reports no token usage"):
        spent = meter.read()
    assert (spent.calls, spent.cached, spent.tokens, spent.unreported) == (3, 1, 35, 1)
    assert spent.budget_tokens == 75 and meter.exceeded() is None
    with log.open("a") as f:
        f.write(json.dumps(lines[1]) + "\n")
    assert meter.exceeded() == (
        "tokens 115/100 (80 of them estimated for 2 calls without reported usage)"
    )


def test_the_pr_body_says_which_calls_reported_no_tokens(tmp_path: Path) -> None:
    root, run_dir = build_run(tmp_path)
    append_jsonl(run_dir / "llm_calls.jsonl", [
        LLMCallRecord(call_id=f"s{k}", model="fake/silent", tokens_in=None, tokens_out=None,
                      latency_s=0.5, started_at=0.0, ended_at=0.5)
        for k in range(2)
    ])  # fmt: skip
    review = load_review(run_dir, SkillRepo.open(root).git)
    body = render_body(review, check_gate(review))
    assert "| `fake/silent` | 2 | 0 | unknown (2 of 2 calls unreported) " in body
    assert "| `fake/m` | 4 | 1 | 400 | 40 |" in body
    assert "2 model call(s) came without token counts" in body


# ---- evolve ---------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "T"],
                 ["config", "user.email", "t@example.com"]):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *args], check=True)
    shutil.copytree(ROOT / "skills" / "wikitq-table-qa", root / "skills" / "wikitq-table-qa")
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-q", "-m", "skill"], check=True)
    return root


def test_evolve_budget_and_summary_with_a_server_that_reports_no_usage(
    repo: Path, tmp_path: Path
) -> None:
    suite = get_suite("wikitq")
    train = [t.id for t in suite.load("train", limit=4, seed=0).tasks]
    test = [t.id for t in suite.load("test", limit=2, seed=0).tasks]
    gold = {t.id: t for t in suite.load("all").tasks}
    config = EvolveConfig(
        run_id="silent", runs_dir=repo.parent / "runs", skill=repo / "skills" / "wikitq-table-qa",
        suite="wikitq", evolve_limit=4, test_limit=2, parallel=1, protocol="json",
    )  # fmt: skip
    script = method_script(gold, set(train[:2]) | set(test[:1]))
    with fake_model(script, usage=False, name="evolve-silent") as model:
        config = config.model_copy(update={"model": model})
        # A token budget went on forever: the calls counted 0. Now they count at estimate.
        with (
            pytest.raises(BudgetExceeded, match=r"tokens .* estimated for 1 calls") as stop,
            pytest.warns(ToolkitNotice, match="reports no token usage"),
        ):
            evolve(config, llm_config=_llm(tmp_path), budget=Budget(tokens=1), progress=False)
        assert stop.value.stage == "rollout"
        summary = evolve(config, llm_config=_llm(tmp_path), resume=True, progress=False)
    stats = summary.stages
    assert stats["rollout"].calls == 4 and stats["rollout"].tokens_unreported == 4
    assert (stats["rollout"].tokens_in, stats["rollout"].tokens_out) == (0, 0)
    assert stats["analyse"].tokens_unreported == stats["analyse"].calls > 0
    saved = json.loads((repo.parent / "runs" / "silent" / "summary.json").read_text())
    assert saved["stages"]["rollout"]["tokens_unreported"] == 4
    lines = summary_lines(summary, repo.parent / "runs" / "silent")
    rollout = next(line for line in lines if line.strip().startswith("rollout"))
    assert rollout.split()[-1] == "unknown"
    assert any("came without token counts" in line for line in lines)
    analyses = [
        json.loads(x)
        for x in (repo.parent / "runs" / "silent" / "analyses.jsonl").read_text().splitlines()
    ]
    assert analyses and all(a["tokens_in"] is None for a in analyses)
    merges = [
        json.loads(x)
        for x in (repo.parent / "runs" / "silent" / "merges.jsonl").read_text().splitlines()
    ]
    assert any(m["tokens_in"] is None for m in merges)


def test_duckdb_reads_an_unknown_count_as_null(tmp_path: Path) -> None:
    """The bulk path's column types: a null count is NULL, an old line's absent one is 0."""
    from toolkit.index_bulk import call_insert, load

    path = tmp_path / "llm_calls.jsonl"
    base = {"call_id": "a", "model": "m", "latency_s": 1.0, "started_at": 0.0, "ended_at": 1.0}
    path.write_text(
        json.dumps({**base, "schema_version": 2, "tokens_in": None, "tokens_out": None}) + "\n"
        + json.dumps({**base, "call_id": "b", "schema_version": 1}) + "\n"
    )  # fmt: skip
    con = duckdb.connect()
    assert load(con, "src_calls", path, "llm_calls") == 2
    select = f"SELECT call_id, tokens_in, tokens_out FROM ({call_insert('src_calls', 'r')})"
    rows = con.execute(select + " ORDER BY 1").fetchall()
    assert rows == [("a", None, None), ("b", 0, 0)]
