"""Rollouts end to end: fake model, real sandbox, vendored gsm8k/wikitq slices, resume."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from toolkit.agent import AgentConfig, agent_fingerprint
from toolkit.cli import main
from toolkit.errors import ToolkitNotice
from toolkit.executor import LocalExecutor
from toolkit.llm import FaultKind, LLMConfig, fake_model, read_calls
from toolkit.rollout import (
    RolloutError,
    read_manifest,
    run_rollouts,
    split_tasks,
    workspace_files,
)
from toolkit.skill import load_skill
from toolkit.tasks import TaskError, get_suite, load_splits
from toolkit.trajectory import (
    Trajectory,
    TrajectoryError,
    Verdict,
    append_jsonl,
    read_jsonl,
    read_trajectories,
    skill_commit,
    task_seed,
    trajectory_id,
)

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SKILL = ROOT / "skills" / "gsm8k-math"
WIKITQ_SKILL = ROOT / "skills" / "wikitq-table-qa"

GSM8K = get_suite("gsm8k")
GSM8K_GOLD = {t.question: t for t in GSM8K.load("all").tasks}
WIKITQ = get_suite("wikitq")
WIKITQ_GOLD = {t.question: t for t in WIKITQ.load("all").tasks}


def llm_config(tmp_path: Path) -> LLMConfig:
    return LLMConfig(model="fake/echo", cache=False, cache_dir=tmp_path / "cache", max_retries=0)


def step_no(messages: list[dict[str, Any]]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def task_of(messages: list[dict[str, Any]], gold: dict[str, Any]) -> Any:
    text = messages[1]["content"]
    return next(task for question, task in gold.items() if question in text)


# Scripted as json agents: they cite sections, which only the json protocol records.
JSON_AGENT = AgentConfig(protocol="json")


def gsm8k_agent(wrong: set[str] = frozenset(), fail: set[str] = frozenset()):  # type: ignore[assignment]
    """Runs the gold answer through python, then submits the printed value."""

    def script(messages: list[dict[str, Any]]) -> Any:
        task = task_of(messages, GSM8K_GOLD)
        if task.id in fail:
            return FaultKind.AUTH
        if step_no(messages) == 0:
            value = task.answers[0] + ("1" if task.id in wrong else "")
            return {
                "thought": "compute",
                "cited_sections": ["gsm8k-math/workflow"],
                "tool": "python",
                "args": {"code": f"answer = {value}\nprint(answer)"},
            }
        printed = messages[-1]["content"].split("\n")[1]
        return {
            "thought": "done",
            "cited_sections": [],
            "tool": "submit",
            "args": {"answer": printed},
        }

    return script


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_gsm8k_rollout_records_verdicts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    tasks = GSM8K.load("test", limit=4, seed=0).tasks
    wrong = {tasks[1].id}
    with fake_model(gsm8k_agent(wrong), name="rollout-gsm8k") as model:
        summary = run_rollouts(
            "gsm8k",
            "test",
            GSM8K_SKILL,
            model,
            run_dir=run_dir,
            limit=4,
            concurrency=2,
            llm_config=llm_config(tmp_path),
            agent_config=JSON_AGENT,
            progress=False,
        )
    assert (summary.tasks, summary.ran, summary.resumed, summary.passed) == (4, 4, 0, 3)
    assert summary.stop_reasons == {"submitted": 4} and summary.pass_rate == 0.75
    records = read_trajectories(run_dir).records
    assert sorted(t.task_id for t in records) == sorted(t.id for t in tasks)
    commit = skill_commit(load_skill(GSM8K_SKILL))
    for t in records:
        assert t.passed == (t.task_id not in wrong)
        assert t.final_answer is not None and t.verdict.gold
        assert (
            t.skill_commit == commit and t.delivery == "system" and t.model == "fake/rollout-gsm8k"
        )
        assert t.sample_seed == task_seed(0, t.task_id) and t.temperature == 0.7
        assert t.id == trajectory_id(
            "gsm8k", t.task_id, commit, t.model, 0, "system", agent_fingerprint(JSON_AGENT)
        )
        assert [s.action.tool for s in t.steps] == ["python", "submit"]
        assert [u.ref for u in t.section_uses] == ["SKILL.md#gsm8k-math/workflow"]
        assert t.tokens_in == sum(s.tokens_in for s in t.steps) > 0
    assert summary.trajectory_ids == [
        trajectory_id(
            "gsm8k",
            t.id,
            commit,
            "fake/rollout-gsm8k",
            0,
            "system",
            agent_fingerprint(JSON_AGENT),
        )
        for t in tasks
    ]
    splits = load_splits(run_dir / "splits.json")
    assert splits.splits == {"test": [t.id for t in tasks]}
    manifest = read_manifest(run_dir)
    assert manifest is not None
    stage = manifest.stages["rollout"]
    assert stage.status == "done" and stage.counts["passed"] == 3
    assert stage.config["skill_commit"] == commit and stage.config["seeds"]["run"] == 0
    calls = read_calls(run_dir / "llm_calls.jsonl")
    assert len(calls) == 8 and all(c.structured for c in calls)


def test_wikitq_rollout_runs_pandas_on_the_table(tmp_path: Path) -> None:
    def script(messages: list[dict[str, Any]]) -> Any:
        task = task_of(messages, WIKITQ_GOLD)
        if step_no(messages) == 0:
            code = "import pandas as pd\ndf = pd.read_csv('table.csv')\nprint(len(df.columns))"
            return {
                "thought": "look",
                "cited_sections": [],
                "tool": "python",
                "args": {"code": code},
            }
        columns = int(messages[-1]["content"].split("\n")[1])
        assert columns >= 1  # the table really was read in the sandbox
        return {
            "thought": "answer",
            "cited_sections": ["table-qa/answer-format-rules"],
            "tool": "submit",
            "args": {"answer": "\n".join(task.answers)},
        }

    with fake_model(script, name="rollout-wikitq") as model:
        summary = run_rollouts(
            "wikitq",
            "test",
            WIKITQ_SKILL,
            model,
            run_dir=tmp_path / "run",
            limit=3,
            concurrency=3,
            delivery="progressive",
            llm_config=llm_config(tmp_path),
            agent_config=JSON_AGENT,
            progress=False,
        )
    assert summary.passed == 3 and summary.delivery == "progressive"
    for t in read_trajectories(tmp_path / "run").records:
        assert t.steps[0].observation.strip().isdigit()
        assert t.section_uses[0].ref == "SKILL.md#table-qa/answer-format-rules"


def test_model_error_ends_one_trajectory_and_the_run_goes_on(tmp_path: Path) -> None:
    tasks = GSM8K.load("test", limit=3, seed=0).tasks
    with fake_model(gsm8k_agent(fail={tasks[0].id}), name="rollout-err") as model:
        summary = run_rollouts(
            "gsm8k",
            "test",
            GSM8K_SKILL,
            model,
            run_dir=tmp_path / "run",
            limit=3,
            llm_config=llm_config(tmp_path),
            progress=False,
        )
    assert summary.errors == 1 and summary.passed == 2 and summary.ran == 3
    failed = next(
        t for t in read_trajectories(tmp_path / "run").records if t.task_id == tasks[0].id
    )
    assert failed.stop_reason == "error" and not failed.passed and failed.error
    assert failed.verdict.details  # scored as a missing answer, with a reason

    # Resuming once the model works runs the failed task again, and only that one; the file
    # keeps one line per task and the finished lines byte-identical.
    path = tmp_path / "run" / "trajectories.jsonl"
    finished = [line for line in lines_of(path) if failed.id.encode() not in line]
    with (
        fake_model(gsm8k_agent(), name="rollout-err") as model,
        pytest.warns(ToolkitNotice, match="running 1 tasks again whose model call failed"),
    ):
        again = run_rollouts(
            "gsm8k", "test", GSM8K_SKILL, model, run_dir=tmp_path / "run", limit=3,
            resume=True, llm_config=llm_config(tmp_path), progress=False,
        )  # fmt: skip
        assert model.calls == 2  # one task, two steps
    assert (again.ran, again.resumed, again.errors, again.passed) == (1, 2, 0, 3)
    after = lines_of(path)
    assert len(after) == 3 and after[:2] == finished


def test_a_model_that_fails_every_task_is_an_error_not_a_score(tmp_path: Path) -> None:
    tasks = GSM8K.load("test", limit=2, seed=0).tasks
    options: dict[str, Any] = {
        "run_dir": tmp_path / "run", "limit": 2, "llm_config": llm_config(tmp_path),
        "progress": False,
    }  # fmt: skip
    script = gsm8k_agent(fail={t.id for t in tasks})
    everyone = "failed on every one of the 2 tasks"
    with (
        fake_model(script, name="rollout-down") as model,
        pytest.raises(RolloutError, match=everyone) as caught,
    ):
        run_rollouts("gsm8k", "test", GSM8K_SKILL, model, **options)
    assert "first error: fake/rollout-down: " in str(caught.value)
    assert "resume" in str(caught.value)
    with (
        fake_model(gsm8k_agent(), name="rollout-down") as model,
        pytest.warns(ToolkitNotice, match="running 2 tasks again"),
    ):
        summary = run_rollouts("gsm8k", "test", GSM8K_SKILL, model, resume=True, **options)
    assert (summary.ran, summary.errors, summary.passed) == (2, 0, 2)


def test_replies_that_never_fit_the_json_schema_point_at_the_protocol(tmp_path: Path) -> None:
    """The hint said to fix the model settings (key, server) although the model answered:
    in prose, which the json protocol cannot use, however often it is run again."""
    with (
        fake_model(lambda messages: "I think the answer is 4.", name="rollout-prose") as model,
        pytest.raises(RolloutError, match="failed on every one") as caught,
    ):
        run_rollouts(
            "gsm8k",
            "test",
            None,
            model,
            run_dir=tmp_path / "run",
            limit=1,
            llm_config=llm_config(tmp_path),
            agent_config=JSON_AGENT,
            progress=False,
        )
    assert "--protocol code" in str(caught.value)
    assert "Fix the model settings" not in str(caught.value)


def test_no_skill_baseline(tmp_path: Path) -> None:
    def script(messages: list[dict[str, Any]]) -> Any:
        assert "read_skill_file" not in messages[0]["content"]
        return {"thought": "guess", "tool": "submit", "args": {"answer": "1"}}

    with fake_model(script, name="rollout-none") as model:
        summary = run_rollouts(
            "gsm8k", "test", None, model, run_dir=tmp_path / "run", limit=2,
            llm_config=llm_config(tmp_path), progress=False,
        )  # fmt: skip
    assert summary.delivery == "none" and summary.skill_commit == "none"
    assert all(t.skill_name is None for t in read_trajectories(tmp_path / "run").records)
    with pytest.raises(RolloutError, match="needs a skill"):
        run_rollouts("gsm8k", "test", None, "fake/echo", run_dir=tmp_path / "x", delivery="system")
    # A skill with delivery none is a contradiction, refused before any work (it was dropped).
    with pytest.raises(RolloutError, match="no-skill baseline"):
        run_rollouts(
            "gsm8k", "test", "skills/gsm8k-math", "fake/echo", run_dir=tmp_path / "y",
            delivery="none",
        )  # fmt: skip
    assert not (tmp_path / "y").exists()


def test_resume_after_a_kill_keeps_finished_lines(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    options: dict[str, Any] = {
        "run_dir": run_dir,
        "limit": 5,
        "concurrency": 1,
        "llm_config": llm_config(tmp_path),
        "progress": False,
    }
    with fake_model(gsm8k_agent(), name="rollout-resume") as model:
        run_rollouts("gsm8k", "test", GSM8K_SKILL, model, **options)
    path = run_dir / "trajectories.jsonl"
    full = lines_of(path)
    assert len(full) == 5
    # A kill mid-write: two finished lines and half of the third.
    path.write_bytes(b"".join(full[:2]) + full[2][: len(full[2]) // 2])
    read = read_trajectories(path)
    assert len(read.records) == 2 and read.torn is not None and "jsonl:3:" in read.torn

    with pytest.raises(RolloutError, match="--resume"):
        run_rollouts("gsm8k", "test", GSM8K_SKILL, "fake/rollout-resume", **options)

    with (
        fake_model(gsm8k_agent(), name="rollout-resume") as model,
        pytest.warns(ToolkitNotice, match="cut an incomplete last line off"),
    ):
        summary = run_rollouts("gsm8k", "test", GSM8K_SKILL, model, resume=True, **options)
        assert model.calls == 6  # 3 tasks x 2 steps: the two finished tasks were not redone
    assert (summary.ran, summary.resumed, summary.passed) == (3, 2, 5)
    after = lines_of(path)
    assert len(after) == 5 and after[:2] == full[:2]  # byte-identical finished work
    assert {Trajectory.model_validate_json(x).id for x in after} == set(summary.trajectory_ids)
    assert read_manifest(run_dir).stages["rollout"].status == "done"  # type: ignore[union-attr]
    # Resuming with another model would mix two models' runs: refused, the file untouched.
    with pytest.raises(RolloutError, match="ran with model fake/rollout-resume; resuming"):
        run_rollouts("gsm8k", "test", GSM8K_SKILL, "fake/echo", resume=True, **options)
    assert lines_of(path) == after
    # The skill folder is recorded absolute too, for an analysis run from elsewhere.
    config = read_manifest(run_dir).stages["rollout"].config  # type: ignore[union-attr]
    assert config["skill_dir"] == str(Path(GSM8K_SKILL).resolve())

    # Resuming a finished run does nothing and rewrites nothing.
    with fake_model(gsm8k_agent(), name="rollout-resume") as model:
        again = run_rollouts("gsm8k", "test", GSM8K_SKILL, model, resume=True, **options)
        assert model.calls == 0
    assert again.ran == 0 and again.resumed == 5 and lines_of(path) == after


def test_recorded_split_is_reused_and_limit_checked(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with fake_model(gsm8k_agent(), name="rollout-split") as model:
        first = run_rollouts(
            "gsm8k", "test", GSM8K_SKILL, model, run_dir=run_dir, limit=2, seed=3,
            llm_config=llm_config(tmp_path), progress=False,
        )  # fmt: skip
        with pytest.raises(Exception, match="limit 2, not 3"):
            run_rollouts(
                "gsm8k", "test", GSM8K_SKILL, model, run_dir=run_dir, limit=3, resume=True,
                llm_config=llm_config(tmp_path), progress=False,
            )  # fmt: skip
        other = run_rollouts(
            "gsm8k", "test", GSM8K_SKILL, model, run_dir=run_dir, delivery="progressive",
            trajectories_path=run_dir / "evals" / "t.jsonl", stage="eval",
            llm_config=llm_config(tmp_path), progress=False,
        )  # fmt: skip
    # The second condition sees exactly the recorded tasks.
    first_tasks = [t.task_id for t in read_trajectories(run_dir).records]
    other_tasks = [t.task_id for t in read_trajectories(run_dir / "evals" / "t.jsonl").records]
    assert sorted(first_tasks) == sorted(other_tasks) and other.tasks == first.tasks == 2
    assert set(read_manifest(run_dir).stages) == {"rollout", "eval"}  # type: ignore[union-attr]


def test_changed_data_names_the_run_folder_and_the_way_out(tmp_path: Path) -> None:
    data = tmp_path / "my.jsonl"
    data.write_text('{"id": "a", "question": "?", "answer": "1"}\n', encoding="utf-8")
    run_dir = tmp_path / "run"
    suite = get_suite("jsonl", path=data)
    assert [t.id for t in split_tasks(suite, "all", limit=None, seed=0, run_dir=run_dir)] == ["a"]
    other = tmp_path / "logs.jsonl"
    other.write_text(data.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(TaskError) as caught:
        split_tasks(get_suite("jsonl", path=other), "all", limit=None, seed=0, run_dir=run_dir)
    message = str(caught.value)
    assert f"splits in {run_dir / 'splits.json'} were made: my.jsonl" in message
    assert (
        "(the data now: logs.jsonl)" in message
        and "another run folder for this data (--run-dir; evolve: --run-id)" in message
    )


def test_a_rollout_says_how_many_rows_it_skipped(tmp_path: Path) -> None:
    data = tmp_path / "my.jsonl"
    data.write_text(
        '{"id": "a", "question": "?", "answer": "1"}\n{"id": "b", "question": "?"}\n',
        encoding="utf-8",
    )
    suite = get_suite("jsonl", path=data, scoring="numeric")
    expected = (
        f"1 malformed row of {data} skipped (see `trace2skill tasks check --suite jsonl "
        f"--data {data} --scoring numeric`)"
    )
    with pytest.warns(ToolkitNotice) as caught:
        run_rollouts(
            suite, "all", None, "fake/echo", run_dir=tmp_path / "run",
            llm_config=llm_config(tmp_path), progress=False,
        )  # fmt: skip
    assert expected in [str(w.message) for w in caught]
    manifest = read_manifest(tmp_path / "run")
    assert manifest is not None and manifest.stages["rollout"].config["skipped_rows"] == 1


# ---- executor --------------------------------------------------------------------------------


def test_local_executor_bounds_concurrency_and_streams_results() -> None:
    running = 0
    peak = 0
    seen: list[int] = []

    async def unit(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (5 - x % 5))
        running -= 1
        return x * x

    results = asyncio.run(
        LocalExecutor().map(
            unit, list(range(20)), concurrency=3, on_result=lambda i, r: seen.append(i)
        )
    )
    assert results == [x * x for x in range(20)]
    assert peak == 3 and sorted(seen) == list(range(20)) and seen != list(range(20))


def test_local_executor_stops_on_the_first_error() -> None:
    started: list[int] = []

    async def unit(x: int) -> int:
        started.append(x)
        if x == 2:
            raise ValueError("unit 2 failed")
        await asyncio.sleep(0.01)
        return x

    with pytest.raises(ValueError, match="unit 2 failed"):
        asyncio.run(LocalExecutor().map(unit, list(range(50)), concurrency=2))
    assert len(started) < 50


# ---- JSONL and ids ---------------------------------------------------------------------------


class Row(BaseModel):
    n: int
    text: str


def test_jsonl_appends_from_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    payload = "z" * 5000

    def writer(k: int) -> None:
        for i in range(50):
            append_jsonl(path, Row(n=k * 100 + i, text=payload))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_jsonl(path, Row).records
    assert sorted(r.n for r in rows) == sorted(k * 100 + i for k in range(4) for i in range(50))


def test_jsonl_torn_tail_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [Row(n=1, text="a"), Row(n=2, text="b")])
    with path.open("ab") as fh:
        fh.write(b'{"n": 3, "te')
    read = read_jsonl(path, Row)
    assert [r.n for r in read.records] == [1, 2] and read.torn and "rows.jsonl:3:" in read.torn
    append_jsonl(path, Row(n=4, text="d"))  # cuts the torn line first
    assert [r.n for r in read_jsonl(path, Row).records] == [1, 2, 4]
    with path.open("ab") as fh:
        fh.write(b'{"n": 5, "text": "e"}')  # complete but no newline: kept
    append_jsonl(path, Row(n=6, text="f"))
    assert [r.n for r in read_jsonl(path, Row).records] == [1, 2, 4, 5, 6]
    path.write_bytes(b'{"n": 1, "text": "a"}\n{"n": "x"}\n{"n": 2, "text": "b"}\n')
    with pytest.raises(TrajectoryError, match=r"rows.jsonl:2: n: "):
        read_jsonl(path, Row)


def test_skill_commit_is_the_git_tree_id(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    skill_dir = repo / "skills" / "gsm8k-math"
    skill_dir.mkdir(parents=True)
    skill = load_skill(GSM8K_SKILL)
    for rel, content in skill.files.items():
        target = skill_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "s0"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    tree = subprocess.run(
        ["git", "rev-parse", "HEAD:skills/gsm8k-math"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert skill_commit(load_skill(skill_dir)) == skill_commit(skill) == tree
    (skill_dir / "SKILL.md").write_text(skill.files["SKILL.md"] + "\nmore\n")  # type: ignore[operator]
    assert skill_commit(load_skill(skill_dir)) != tree


# ---- CLI -------------------------------------------------------------------------------------


def test_cli_rollout_show_and_refusal(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    runner = CliRunner()
    args = [
        "rollout", "--suite", "gsm8k", "--split", "test", "--skill", str(GSM8K_SKILL),
        "--limit", "2", "--run-dir", str(run_dir), "--model", "fake/rollout-cli", "--no-cache",
        "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--protocol", "json",
    ]  # fmt: skip
    with fake_model(gsm8k_agent(), name="rollout-cli"):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "passed        2/2 (100.0%)" in result.output and "per task" in result.output
        again = runner.invoke(main, args)
        assert again.exit_code == 1 and "Error:" in again.output and "--resume" in again.output
        resumed = runner.invoke(main, [*args, "--resume", "--json"])
        assert resumed.exit_code == 0
        assert json.loads(resumed.output.strip().splitlines()[-1])["resumed"] == 2
    shown = runner.invoke(main, ["trajectories", "show", str(run_dir)])
    assert shown.exit_code == 0 and "2 trajectories, 2 passed" in shown.output
    first_id = read_trajectories(run_dir).records[0].id
    one = runner.invoke(main, ["trajectories", "show", str(run_dir), "--id", first_id[:6]])
    assert (
        one.exit_code == 0
        and "[0] python" in one.output
        and "cited gsm8k-math/workflow" in one.output
    )
    assert "response cache" not in one.output
    # The same tasks into a second run with the cache on, twice: the second run's replies
    # all come from the cache, which its trajectories say (they record 0 tokens).
    cached = [a for a in args if a != "--no-cache"]
    cached[cached.index(str(run_dir))] = str(tmp_path / "cached")
    with fake_model(gsm8k_agent(), name="rollout-cli"):
        first = runner.invoke(main, cached)
        assert "response cache" not in first.output  # the first run called the model
        cached[cached.index(str(tmp_path / "cached"))] = str(tmp_path / "cached2")
        replayed = runner.invoke(main, cached)
        assert replayed.exit_code == 0
    # Its summary said "0.0 per task" as if the model were that fast.
    assert "(ran 2, resumed 0); 2 replayed from the response cache" in replayed.output
    assert "(no task without the cache)" in replayed.output
    again_id = read_trajectories(tmp_path / "cached2").records[0].id
    hit = runner.invoke(main, ["trajectories", "show", str(tmp_path / "cached2"), "--id", again_id])
    assert "in 0 / out 0" in hit.output and "(2 of 2 replies from the response cache)" in hit.output
    missing = runner.invoke(main, ["trajectories", "show", str(run_dir), "--id", "zzz"])
    assert missing.exit_code == 1 and "Error: no trajectory id" in missing.output
    for command in (["rollout", "--help"], ["trajectories", "import", "--help"]):
        helped = runner.invoke(main, command)
        assert helped.exit_code == 0 and "Example" in helped.output


def test_cli_rollout_resume_takes_the_run_s_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a trial: `rollout --resume` without --model refused ("ran with model ...;
    resuming with local/qwen2.5-coder-1.5b would mix ...") where `evolve --resume` takes the
    run's model. Another --model, given, is still refused; so is $TRACE2SKILL_MODEL not."""
    monkeypatch.setenv("TRACE2SKILL_MODEL", "fake/echo")  # the run's model wins over it
    run_dir = tmp_path / "run"
    args = [
        "rollout", "--suite", "gsm8k", "--limit", "2", "--run-dir", str(run_dir),
        "--no-cache", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
    ]  # fmt: skip
    runner = CliRunner()
    with fake_model(gsm8k_agent(), name="rollout-own"):
        first = runner.invoke(main, [*args, "--model", "fake/rollout-own"])
        assert first.exit_code == 0, first.output
        path = run_dir / "trajectories.jsonl"
        path.write_bytes(lines_of(path)[0])  # as if killed after the first task
        resumed = runner.invoke(main, [*args, "--resume", "--json"])
        assert resumed.exit_code == 0, resumed.output
        summary = json.loads(resumed.output.strip().splitlines()[-1])
        assert (summary["model"], summary["ran"], summary["resumed"]) == ("fake/rollout-own", 1, 1)
    other = runner.invoke(main, [*args, "--resume", "--model", "fake/echo"])
    assert other.exit_code == 1 and "ran with model fake/rollout-own" in other.output
    helped = runner.invoke(main, ["rollout", "--help"])
    assert "on --resume the run's" in " ".join(helped.output.split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "local/qwen2.5-coder-1.5b"], 1),
        (["--model", "openai/gpt-4o-mini"], 4),
        (["--model", "local/qwen2.5-coder-1.5b", "--concurrency", "3"], 3),
        (["--model", "local/qwen2.5-coder-1.5b", "--parallel", "2"], 2),
        (["--model", "openai/gpt-4o-mini", "--parallel", "2", "--concurrency", "8"], 2),
    ],
)
def test_cli_rollout_concurrency_default_follows_the_model(
    args: list[str], expected: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The embedded local model serves one request at a time: its tasks run one by one."""
    import toolkit.rollout
    from toolkit.errors import ToolkitError

    seen = []

    def fake_run_rollouts(*_args: Any, concurrency: int, **_kwargs: Any) -> None:
        seen.append(concurrency)
        raise ToolkitError("stop here")

    monkeypatch.setattr(toolkit.rollout, "run_rollouts", fake_run_rollouts)
    out = CliRunner().invoke(
        main, ["rollout", "--suite", "gsm8k", "--run-dir", str(tmp_path), *args]
    )
    assert "stop here" in out.output
    assert seen == [expected]


def test_workspace_files_match_build_workspace(tmp_path: Path) -> None:
    for suite in (get_suite("spreadsheet"), WIKITQ, GSM8K):
        task = suite.load("test", limit=1, seed=0).tasks[0]
        files = workspace_files(suite, task)
        written = suite.build_workspace(task, tmp_path / suite.name)
        expected = {
            p.relative_to(tmp_path / suite.name).as_posix(): p.read_bytes() for p in written
        }
        got = {k: v.encode() if isinstance(v, str) else v for k, v in (files or {}).items()}
        assert got == expected
    assert workspace_files(GSM8K, GSM8K.load("test", limit=1).tasks[0]) is None


def test_bad_requests_leave_no_run_dir(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no split 'dev'"):
        run_rollouts("gsm8k", "dev", None, "fake/echo", run_dir=tmp_path / "a", progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(
        RolloutError,
        match=r"has no tasks in .*bad.jsonl \(no task loaded\); 1 malformed row skipped",
    ):
        run_rollouts(
            get_suite("jsonl", path=bad), "all", None, "fake/echo",
            run_dir=tmp_path / "b", progress=False,
        )  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_changed_agent_does_not_reuse_finished_work(tmp_path: Path) -> None:
    assert agent_fingerprint(AgentConfig()) == agent_fingerprint(AgentConfig())
    assert agent_fingerprint(AgentConfig()) != agent_fingerprint(AgentConfig(max_turns=5))
    options: dict[str, Any] = {
        "run_dir": tmp_path / "run",
        "limit": 2,
        "concurrency": 1,
        "llm_config": llm_config(tmp_path),
        "progress": False,
    }
    with fake_model(gsm8k_agent(), name="rollout-agent-change") as model:
        first = run_rollouts("gsm8k", "test", GSM8K_SKILL, model, **options)
        same = run_rollouts("gsm8k", "test", GSM8K_SKILL, model, resume=True, **options)
        changed = run_rollouts(
            "gsm8k",
            "test",
            GSM8K_SKILL,
            model,
            resume=True,
            agent_config=AgentConfig(max_turns=5),
            **options,
        )
    assert (first.ran, same.ran, same.resumed) == (2, 0, 2)
    assert changed.ran == 2 and changed.resumed == 0
    assert set(changed.trajectory_ids).isdisjoint(first.trajectory_ids)


def test_the_heap_is_frozen_for_the_run_only(tmp_path: Path) -> None:
    """A full collection mid-run would walk litellm's whole heap and stall every rollout."""
    import gc

    seen: list[int] = []
    agent = gsm8k_agent()

    def script(messages: list[dict[str, Any]]) -> Any:
        seen.append(gc.get_freeze_count())
        return agent(messages)

    assert gc.get_freeze_count() == 0
    with fake_model(script) as model:
        summary = run_rollouts(
            "gsm8k", "test", None, model, run_dir=tmp_path / "run", limit=2,
            llm_config=llm_config(tmp_path), progress=False,
        )  # fmt: skip
    assert summary.passed == 2 and len(seen) == 4
    assert min(seen) > 1000  # the modules and litellm's state were frozen during the run
    assert gc.get_freeze_count() == 0  # and handed back to the collector after it


_STOPPED_CHILD = """
import signal
import sys
# Ctrl-C as a terminal delivers it: a suite started in the background by a non-interactive
# shell (nohup ... &) ignores SIGINT, and the child would inherit that (rightly ignoring it).
signal.signal(signal.SIGINT, signal.default_int_handler)
from tests.test_rollout import gsm8k_agent
from toolkit.cli import main
from toolkit.errors import ToolkitNotice
from toolkit.llm import fake_model

with fake_model(gsm8k_agent(), name="stop", latency=0.3) as model:
    main([*sys.argv[1:], "--model", model], prog_name="trace2skill")
"""


@pytest.mark.parametrize(
    ("command", "sig", "code", "word"),
    [
        ("rollout", "SIGTERM", 143, "Terminated"),
        ("eval", "SIGINT", 130, "Interrupted"),
        # A trial's finding: compare said a bare "Interrupted." (eval said how to go on).
        ("compare", "SIGINT", 130, "Interrupted"),
    ],
)
def test_a_stopped_rollout_or_eval_says_how_to_go_on(
    tmp_path: Path, command: str, sig: str, code: int, word: str
) -> None:
    """Found by a new-user trial: Ctrl-C or a kill printed click's bare "Aborted!"."""
    import signal
    import sys
    import time

    run_dir = tmp_path / "run"
    args = [command, "--suite", "gsm8k", "--limit", "6", "--run-dir", str(run_dir),
            "--protocol", "json", "--parallel", "1", "--no-progress", "--no-cache"]  # fmt: skip
    skill = str(ROOT / "skills" / "gsm8k-math")
    args += ["none", skill] if command == "compare" else ["--skill", skill]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACE2SKILL_CACHE_DIR": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _STOPPED_CHILD, *args], cwd=ROOT, env=env,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    found = run_dir / ("trajectories.jsonl" if command == "rollout" else "evals")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        p.is_file() and p.stat().st_size for p in [found, *found.rglob("*.jsonl")]
        if found.exists()
    ):  # fmt: skip
        time.sleep(0.05)
    child.send_signal(getattr(signal, sig))
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == code, stderr
    assert f"{word}. Finished tasks are saved" in stderr and "Aborted!" not in stderr


def test_rollouts_of_a_committed_skill_name_it_for_analyse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: `analyse` of rollouts made with --skill REV:PATH said the
    run did not record its skill."""
    from tests.repo_helpers import git

    repo = tmp_path / "repo"
    shutil.copytree(GSM8K_SKILL, repo / "skills" / "gsm8k-math")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "s0")
    monkeypatch.chdir(repo)
    with fake_model(gsm8k_agent(), name="rollout-rev") as model:
        out = CliRunner().invoke(
            main,
            ["rollout", "--skill", "HEAD:skills/gsm8k-math", "--suite", "gsm8k", "--limit", "1",
             "--run-dir", str(tmp_path / "run"), "--model", model, "--protocol", "json",
             "--no-cache", "--no-progress"],
        )  # fmt: skip
    assert out.exit_code == 0, out.output
    manifest = read_manifest(tmp_path / "run")
    assert manifest.stages["rollout"].config["skill_source"] == "HEAD:skills/gsm8k-math"  # type: ignore[union-attr]
    analysed = CliRunner().invoke(
        main, ["analyse", str(tmp_path / "run"), "--author-model", "fake/echo"]
    )
    assert analysed.exit_code == 1
    assert "read the skill from git (HEAD:skills/gsm8k-math)" in analysed.output


def test_the_skill_scripts_run_from_the_agents_working_folder(tmp_path: Path) -> None:
    """A skill's scripts/ reached neither the sandbox nor the prompt: a SKILL.md saying "run
    scripts/x.py" pointed the agent at a file it did not have."""
    skill_dir = tmp_path / "skills" / "gsm8k-math"
    shutil.copytree(GSM8K_SKILL, skill_dir)
    (skill_dir / "scripts").mkdir()
    (skill_dir / "scripts" / "double.py").write_text(
        "import sys\nprint(2 * int(sys.argv[1]))\n", encoding="utf-8"
    )
    seen: list[tuple[str, str]] = []

    def script(messages: list[dict[str, Any]]) -> str:
        if step_no(messages) == 0:
            seen.append((messages[0]["content"], messages[1]["content"]))
            return (
                "```python\nimport subprocess, sys\n"
                "print(subprocess.run([sys.executable, 'scripts/double.py', '21'],"
                " capture_output=True, text=True).stdout.strip())\n```"
            )
        return f"FINAL ANSWER: {messages[-1]['content'].strip().splitlines()[-1]}"

    with fake_model(script, name="rollout-skill-script") as model:
        run_rollouts(
            "gsm8k",
            "test",
            skill_dir,
            model,
            run_dir=tmp_path / "run",
            limit=1,
            llm_config=llm_config(tmp_path),
            progress=False,
        )
    (t,) = read_trajectories(tmp_path / "run").records
    assert "42" in t.steps[0].observation and t.final_answer == "42"
    (system, task), *_ = seen
    # Named once, in the system prompt; the task's own file list stays the task's.
    assert "scripts/double.py" in system and "scripts/" not in task


def test_a_rollout_of_an_invalid_skill_warns_first(tmp_path: Path) -> None:
    skill_dir = tmp_path / "skills" / "gsm8k-math"
    shutil.copytree(GSM8K_SKILL, skill_dir)
    text = (skill_dir / "SKILL.md").read_text(encoding="utf-8")
    (skill_dir / "SKILL.md").write_text(text.replace("---\n", "---\ntags: [math]\n", 1))
    with pytest.warns(ToolkitNotice, match=r"does not validate .*line 2.*evolve will refuse"):
        run_rollouts(
            "gsm8k",
            "test",
            skill_dir,
            "fake/echo",
            run_dir=tmp_path / "run",
            limit=1,
            llm_config=llm_config(tmp_path),
            progress=False,
        )


def test_cli_trajectories_protocol_and_gold(tmp_path: Path) -> None:
    """A trial: the list had no protocol column nor filter (an eval folder holds several), and
    --id never showed the gold beside the answer though the verdict stores it."""

    def made(task_id: str, protocol: str, answer: str, passed: bool) -> Trajectory:
        return Trajectory(
            id=trajectory_id("gsm8k", task_id, "none", "fake/m", 0, protocol),
            task_id=task_id,
            suite="gsm8k",
            split="test",
            model="fake/m",
            delivery="none",
            protocol=protocol,
            final_answer=answer,
            verdict=Verdict(
                passed=passed,
                score=float(passed),
                details="" if passed else "differs from the gold number",  # synth: no reason
                predicted=["163" if passed else "7"],
                gold=["163"],
            ),
            stop_reason="submitted",
        )

    path = tmp_path / "trajectories.jsonl"
    plain = made("q1", "plain", "The package held 7 notes.", False)
    code = made("q1", "code", "163", True)
    append_jsonl(path, [plain, code])
    runner = CliRunner()
    shown = runner.invoke(main, ["trajectories", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    header, first, second = shown.output.splitlines()[:3]
    assert header.split()[3] == "protocol"
    assert (first.split()[3], second.split()[3]) == ("plain", "code")
    for command in ("show", "list"):  # `list` is the list mode of show
        only = runner.invoke(main, ["trajectories", command, str(path), "--protocol", "plain"])
        assert only.exit_code == 0, only.output
        assert plain.id in only.output and "1 trajectory, 0 passed" in only.output
    one = runner.invoke(main, ["trajectories", "show", str(path), "--id", plain.id])
    assert "answer    'The package held 7 notes.' (read as 7)\ngold      163\n" in one.output
    assert "verdict   FAIL: differs from the gold number\n" in one.output
    passed = runner.invoke(main, ["trajectories", "show", str(path), "--id", code.id]).output
    assert "verdict   PASS\nanswer    '163'\ngold      163\n" in passed  # no colon, no reason
    no_id = runner.invoke(main, ["trajectories", "list", str(path), "--id", "x"])
    assert no_id.exit_code == 2 and "No such option '--id'" in no_id.output


def test_a_json_document_given_for_trajectories_says_what_it_is(tmp_path):
    """`trajectories show runs/x/manifest.json` said 'manifest.json:1: not valid JSON' of a
    valid file (an analyst's trial): it is one JSON document, not a JSONL file."""
    from click.testing import CliRunner

    from toolkit.cli import main

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"run_id": "r", "stages": {}}, indent=2) + "\n")
    out = CliRunner().invoke(main, ["trajectories", "show", str(manifest)])
    assert out.exit_code == 1, out.output
    assert "is one JSON document, not a JSONL file of records" in out.output
    assert "not valid JSON" not in out.output
    # A damaged JSONL file still names its line.
    bad = tmp_path / "trajectories.jsonl"
    bad.write_text('{"id": \n')
    out = CliRunner().invoke(main, ["trajectories", "show", str(bad)])
    assert out.exit_code == 1 and "trajectories.jsonl:1: not valid JSON" in out.output
