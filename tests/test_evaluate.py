import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.repo_helpers import git
from tests.test_tasks_jsonl import write_jsonl
from toolkit.cli import main
from toolkit.evaluate import (
    EVAL_SCHEMA_VERSION,
    EvalError,
    EvalRecord,
    EvalResult,
    compare,
    eval_path,
    evaluate,
    load_eval,
    pair_results,
    record_of,
    store,
    summarise,
)
from toolkit.skill import load_skill
from toolkit.trajectory import Trajectory, Verdict, skill_commit, trajectory_id

ROOT = Path(__file__).resolve().parents[1]


def _trajectory(task_id: str, passed: bool, *, commit: str, seed: int = 0) -> Trajectory:
    delivery = "none" if commit == "none" else "system"
    return Trajectory(
        id=trajectory_id("gsm8k", task_id, commit, "fake/m", seed, delivery),
        task_id=task_id,
        suite="gsm8k",
        split="test",
        skill_commit=commit,
        model="fake/m",
        seed=seed,
        delivery=delivery,
        verdict=Verdict(passed=passed, score=1.0 if passed else 0.0),
        tokens_in=100,
        tokens_out=20,
        latency_s=2.0,
        stop_reason="submitted",
    )


def _result(outcomes: dict[str, bool], *, commit: str, seed: int = 0, path=None) -> EvalResult:
    records = [
        record_of(_trajectory(t, p, commit=commit, seed=seed), "test") for t, p in outcomes.items()
    ]
    summary = summarise(
        records,
        suite="gsm8k",
        split="test",
        skill="none" if commit == "none" else "gsm8k-math",
        skill_commit=commit,
        model="fake/m",
        seed=seed,
        delivery="none" if commit == "none" else "system",
        limit=None,
        resamples=1000,
    )
    return EvalResult(summary=summary, records=records, path=path)


def test_summarise_figures():
    result = _result({f"t{i}": i < 6 for i in range(10)}, commit="none")
    s = result.summary
    assert (s.n, s.passed, s.errors) == (10, 6, 0)
    assert result.rate == pytest.approx(0.6)
    assert result.ci[0] < 0.6 < result.ci[1]
    assert s.pass_rate.wilson.low < 0.6 < s.pass_rate.wilson.high
    assert result.tokens_per_task == 120 and result.seconds_per_task == 2.0
    assert s.seconds_median == 2.0
    assert result.mde is not None and 0.5 < result.mde < 0.7
    assert s.task_ids == [f"t{i}" for i in range(10)]
    assert s.schema_version == EVAL_SCHEMA_VERSION and s.kind == "summary"


def test_summarise_empty_is_defined():
    result = _result({}, commit="none")
    assert result.n == 0 and result.rate is None and result.mde is None
    assert result.tokens_per_task == 0.0 and result.summary.mean_score is None
    assert result.summary.seconds_median is None


def test_pairing_drops_unmatched_and_reports_why():
    a = _result({"t1": False, "t2": False, "t3": True, "t4": False, "only_a": True}, commit="none")
    b = _result({"t1": True, "t2": True, "t3": True, "t4": False, "only_b": False}, commit="abc")
    comparison = pair_results(a, b, resamples=1000)
    p = comparison.paired
    assert comparison.pairs == [("t1", 0), ("t2", 0), ("t3", 0), ("t4", 0)]
    assert (p.n, p.only_a, p.only_b, p.both_pass, p.both_fail) == (4, 0, 2, 1, 1)
    assert p.difference == pytest.approx(0.5)
    assert p.p_value == pytest.approx(0.5)  # 2 * (1/2)^2
    assert [(d.task_id, d.reason) for d in comparison.dropped] == [
        ("only_a", "only-in-a"),
        ("only_b", "only-in-b"),
    ]
    assert comparison.a.skill_commit == "none" and comparison.b.skill_commit == "abc"


def test_pairing_uses_the_seed_too():
    a = _result({"t1": True, "t2": False}, commit="none", seed=0)
    b = _result({"t1": True, "t2": True}, commit="abc", seed=1)
    comparison = pair_results(a, b, resamples=100)
    assert comparison.paired.n == 0 and comparison.paired.difference is None
    assert len(comparison.dropped) == 4


def test_pairing_refuses_other_split():
    a = _result({"t1": True}, commit="none")
    b = _result({"t1": True}, commit="abc")
    b.summary.split = "train"
    with pytest.raises(EvalError, match="same suite and split"):
        pair_results(a, b)


def test_store_is_append_only_and_idempotent(tmp_path):
    path = eval_path(tmp_path, "abc", "test")
    assert path == tmp_path / "evals" / "abc" / "test.jsonl"
    first = _result({"t1": True, "t2": False}, commit="abc", path=path)
    store(first, path)
    before = path.read_bytes()
    store(first, path)
    assert path.read_bytes() == before  # nothing re-written on a re-run
    lines = [json.loads(x) for x in before.decode().splitlines()]
    assert [x["kind"] for x in lines] == ["task", "task", "summary"]
    assert {"task_id", "seed", "model", "passed", "score", "trajectory_id"} <= set(lines[0])
    assert all(x["schema_version"] == EVAL_SCHEMA_VERSION for x in lines)
    # A wider evaluation of the same condition appends only what is new.
    second = _result({"t1": True, "t2": False, "t3": True}, commit="abc", path=path)
    store(second, path)
    after = path.read_bytes()
    assert after.startswith(before)
    assert [json.loads(x)["kind"] for x in after.decode().splitlines()[3:]] == ["task", "summary"]
    loaded = load_eval(path)
    assert loaded.summary == second.summary
    assert [r.task_id for r in loaded.records] == ["t1", "t2", "t3"]
    # A later evaluation of a subset (ablate --tasks re-evaluates S0 on some of the run's
    # tasks) does not replace the widest one: the PR body showed n=5 instead of the run's 10.
    store(_result({"t1": True}, commit="abc", path=path), path)
    assert load_eval(path).summary == second.summary


def test_load_eval_errors(tmp_path):
    with pytest.raises(EvalError, match="not found"):
        load_eval(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "task"}\n')
    with pytest.raises(EvalError, match="not an eval file"):
        load_eval(bad)
    path = tmp_path / "two.jsonl"
    store(_result({"t1": True}, commit="abc", seed=0), path)
    store(_result({"t1": False}, commit="abc", seed=1), path)
    with pytest.raises(EvalError, match="several evaluations"):
        load_eval(path)
    assert load_eval(path, seed=1).records[0].passed is False
    with pytest.raises(EvalError, match="no evaluation summary"):
        load_eval(path, seed=7)


def test_load_eval_ignores_torn_last_line(tmp_path):
    path = tmp_path / "e.jsonl"
    store(_result({"t1": True}, commit="abc"), path)
    with path.open("a") as handle:
        handle.write('{"kind": "task", "suite": "gsm')  # a writer killed mid-line
    assert load_eval(path).n == 1


def test_compare_from_files(tmp_path):
    a_path, b_path = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    store(_result({f"t{i}": i < 3 for i in range(10)}, commit="none"), a_path)
    store(_result({f"t{i}": i < 9 for i in range(10)}, commit="abc"), b_path)
    comparison = compare(a_path, b_path, resamples=2000)
    p = comparison.paired
    assert (p.only_a, p.only_b, p.n) == (0, 6, 10)
    assert p.difference == pytest.approx(0.6)
    assert p.p_value == pytest.approx(2 / 64)
    assert comparison.a.path == a_path


def test_cli_compare_stored_files(tmp_path):
    a_path, b_path = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    store(_result({f"t{i}": i < 3 for i in range(10)}, commit="none"), a_path)
    store(_result({f"t{i}": i < 9 for i in range(10)}, commit="abc"), b_path)
    runner = CliRunner()
    out = runner.invoke(main, ["compare", str(a_path), str(b_path), "--resamples", "2000"])
    assert out.exit_code == 0, out.output
    assert "B - A: +0.60 [" in out.output
    assert "(n=10 pairs), p=0.03125 (exact McNemar)" in out.output
    assert "only A passed 0, only B passed 6; both passed 3, both failed 1" in out.output
    assert "dropped: 0" in out.output
    as_json = runner.invoke(main, ["compare", str(a_path), str(b_path), "--json"])
    data = json.loads(as_json.output)
    assert data["paired"]["only_b"] == 6 and data["paired"]["n"] == 10
    missing = runner.invoke(main, ["compare", str(a_path), str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and "nope.jsonl: no such file" in missing.output

    # A second model evaluated into B's file: --model chooses (it was ignored before).
    other = _result({f"t{i}": False for i in range(10)}, commit="abc")
    store(
        EvalResult(
            summary=other.summary.model_copy(update={"model": "fake/other"}),
            records=[r.model_copy(update={"model": "fake/other"}) for r in other.records],
        ),
        b_path,
    )
    out = runner.invoke(main, ["compare", str(a_path), str(b_path), "--model", "fake/other"])
    assert out.exit_code == 0, out.output
    assert "only A passed 3, only B passed 0" in out.output
    # A's file holds one evaluation, of another model: compared as stored, and said so (an
    # analyst read such a comparison as the --model's).
    assert f"{a_path} holds an evaluation of" in out.output
    assert "not of fake/other (--model): compared as stored" in out.output
    assert f"{b_path} holds" not in out.output
    out = runner.invoke(main, ["compare", str(a_path), str(b_path), "--model", "fake/third"])
    assert out.exit_code == 1 and "no evaluation summary matches" in out.output
    assert "it holds: suite=" in out.output and "model=fake/other" in out.output  # what to pick


def test_cli_compare_stored_files_refuses_another_split(tmp_path):
    """Found on the real benchmark folders: `compare <gsm8k code> <gsm8k plain> --split train`
    printed the test split's comparison, --split silently ignored."""
    a_path, b_path = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    store(_result({f"t{i}": i < 3 for i in range(10)}, commit="none"), a_path)
    store(_result({f"t{i}": i < 9 for i in range(10)}, commit="abc"), b_path)
    runner = CliRunner()
    args = ["compare", str(a_path), str(b_path), "--resamples", "200"]
    out = runner.invoke(main, [*args, "--split", "train"])
    assert out.exit_code == 1, out.output
    assert out.output == (
        f"Error: {a_path} holds the 'test' split, not 'train': "
        "give evals/<skill>/train.jsonl, or leave --split out\n"
    )
    # The split the files hold is accepted when named.
    out = runner.invoke(main, [*args, "--split", "test"])
    assert out.exit_code == 0 and "B - A: +0.60 [" in out.output


def _with_protocol(result: EvalResult, protocol: str) -> EvalResult:
    return EvalResult(
        summary=result.summary.model_copy(update={"protocol": protocol}),
        records=[r.model_copy(update={"protocol": protocol}) for r in result.records],
    )


def test_cli_compare_two_protocols_of_one_file(tmp_path, monkeypatch):
    """A trial: the A/B lines did not name the protocol, one --protocol filtered both sides of a
    file holding two (code compared with code), the flipped tasks went unnamed, and the
    ambiguous-file error named filters never given (the default model, seed 0)."""
    monkeypatch.delenv("TRACE2SKILL_MODEL", raising=False)
    path = tmp_path / "none.jsonl"
    ids = [f"t{i}" for i in range(25)]
    # code passes t0..t1 and t24; tools passes t0..t23: 22 gained, 1 lost.
    code = {t: i < 2 or i == 24 for i, t in enumerate(ids)}
    tools = {t: i < 24 for i, t in enumerate(ids)}
    store(_with_protocol(_result(code, commit="none"), "code"), path)
    store(_with_protocol(_result(tools, commit="none"), "tools"), path)
    runner = CliRunner()
    args = ["compare", str(path), str(path), "--resamples", "200"]
    out = runner.invoke(main, [*args, "--protocol-a", "code", "--protocol-b", "tools"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[1] == ("A: no skill (fake/m, seed 0, delivery none, protocol code) pass rate 0.12")
    assert lines[2].startswith("B: no skill (fake/m, seed 0, delivery none, protocol tools)")
    assert "  only A passed: t24" in lines
    gained = ", ".join(ids[2:22])
    assert f"  only B passed: {gained} (and 2 more: --json)" in lines
    # --protocol is both sides; a side's own option overrides it.
    same = runner.invoke(main, [*args, "--protocol", "code"])
    assert "B - A: +0.00" in same.output and "only B passed:" not in same.output
    mixed = runner.invoke(main, [*args, "--protocol", "code", "--protocol-b", "tools"])
    assert "protocol tools) pass rate 0.96" in mixed.output
    as_json = json.loads(
        runner.invoke(
            main, [*args, "--protocol-a", "code", "--protocol-b", "tools", "--json"]
        ).output
    )
    assert (as_json["a"]["protocol"], as_json["b"]["protocol"]) == ("code", "tools")
    assert as_json["outcomes"][24] == {
        "task_id": "t24", "seed": 0, "passed_a": True, "passed_b": False
    }  # fmt: skip
    assert len(as_json["outcomes"]) == 25
    # Nothing chosen: the file's evaluations are listed, and no default filter is named.
    both = runner.invoke(main, args)
    assert both.exit_code == 1 and "holds several evaluations" in both.output
    assert "protocol=code" in both.output and "protocol=tools" in both.output
    assert "local/" not in both.output and "--protocol-a/--protocol-b" in both.output
    none = runner.invoke(main, [*args, "--protocol", "plain"])
    assert none.exit_code == 1
    assert "no evaluation summary matches (protocol=plain); it holds:" in none.output


def _with_delivery(result: EvalResult, delivery: str) -> EvalResult:
    return EvalResult(
        summary=result.summary.model_copy(update={"delivery": delivery}),
        records=[r.model_copy(update={"delivery": delivery}) for r in result.records],
    )


def test_cli_compare_stored_file_of_another_delivery_says_so(tmp_path, monkeypatch):
    """`compare` on stored files checked --model but not --delivery: a file evaluated with
    another delivery was compared with no word, read as the --delivery asked for. One
    --delivery cannot describe two sides that may differ (system against progressive is a
    comparison worth making), so, as with --model, it is compared as stored and said so."""
    monkeypatch.delenv("TRACE2SKILL_MODEL", raising=False)
    none_path, skill_path = tmp_path / "none.jsonl", tmp_path / "skill.jsonl"
    store(_result({f"t{i}": i < 3 for i in range(10)}, commit="none"), none_path)
    store(_result({f"t{i}": i < 9 for i in range(10)}, commit="abc"), skill_path)  # system
    runner = CliRunner()
    args = ["compare", str(none_path), str(skill_path), "--resamples", "200"]
    out = runner.invoke(main, [*args, "--delivery", "progressive"])
    assert out.exit_code == 0, out.output
    note = (
        f"Note: {skill_path} holds an evaluation with delivery system, not progressive "
        "(--delivery): compared as stored\n"
    )
    assert note in out.output
    # No skill has no delivery to differ in ('none' whatever --delivery says): no note.
    assert f"{none_path} holds" not in out.output
    assert "B: gsm8k-math@abc (fake/m, seed 0, delivery system, protocol" in out.output
    for quiet in ([], ["--delivery", "system"]):  # not asked, or asked for what is stored
        assert "Note:" not in runner.invoke(main, [*args, *quiet]).output


def test_cli_compare_delivery_picks_within_a_file_of_several(tmp_path, monkeypatch):
    """A file holding one skill evaluated with both deliveries: --delivery chooses, and
    without it the error names the deliveries and the option that picks."""
    monkeypatch.delenv("TRACE2SKILL_MODEL", raising=False)
    none_path, skill_path = tmp_path / "none.jsonl", tmp_path / "skill.jsonl"
    store(_result({f"t{i}": i < 3 for i in range(10)}, commit="none"), none_path)
    store(_result({f"t{i}": i < 9 for i in range(10)}, commit="abc"), skill_path)
    progressive = _result({f"t{i}": i < 5 for i in range(10)}, commit="abc")
    store(_with_delivery(progressive, "progressive"), skill_path)
    runner = CliRunner()
    args = ["compare", str(none_path), str(skill_path), "--resamples", "200"]
    both = runner.invoke(main, args)
    assert both.exit_code == 1 and "holds several evaluations" in both.output
    assert "delivery=progressive" in both.output and "delivery=system" in both.output
    assert "--delivery" in both.output
    for delivery, rate in (("progressive", "0.50"), ("system", "0.90")):
        out = runner.invoke(main, [*args, "--delivery", delivery])
        assert out.exit_code == 0, out.output
        assert f"delivery {delivery}, protocol json) pass rate {rate}" in out.output
        assert "Note:" not in out.output
    # A no-skill file of several models is narrowed by --model, never by --delivery (its
    # evaluations have none): choosing a delivery for the skill side does not break it.
    other = _result({f"t{i}": False for i in range(10)}, commit="none")
    store(
        EvalResult(
            summary=other.summary.model_copy(update={"model": "fake/other"}),
            records=[r.model_copy(update={"model": "fake/other"}) for r in other.records],
        ),
        none_path,
    )
    out = runner.invoke(main, [*args, "--delivery", "progressive", "--model", "fake/m"])
    assert out.exit_code == 0, out.output
    assert "A: no skill (fake/m, seed 0, delivery none, protocol json) pass rate 0.30" in out.output


def test_cli_compare_stored_file_of_another_protocol_is_refused(tmp_path):
    """--protocol (or --protocol-a/-b, one per side) is checked too: unlike --model and
    --delivery each side can be given its own, so a file that holds no evaluation of the
    protocol asked for is refused, in one line that says what it holds."""
    a_path, b_path = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    store(_result({f"t{i}": i < 3 for i in range(10)}, commit="none"), a_path)
    store(_result({f"t{i}": i < 9 for i in range(10)}, commit="abc"), b_path)
    # The fixture's evaluations are of the json protocol.
    out = CliRunner().invoke(main, ["compare", str(a_path), str(b_path), "--protocol", "code"])
    assert out.exit_code == 1 and out.output.count("\n") == 1
    assert out.output.startswith(f"Error: {a_path}: no evaluation summary matches (protocol=code)")
    assert "protocol=json" in out.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--skill", "none", "--suite", "gsm8k", "--split", "dev"], "no split 'dev'"),
        (["eval", "--skill", "none"], "--suite is required"),
        (["compare", "none", "skills/gsm8k-math"], "--suite is required"),
        (["eval", "--skill", "none", "--suite", "jsonl"], "--suite jsonl needs --data"),
        (["eval", "--skill", "none", "--suite", "gsm8k", "--scoring", "numeric"], "jsonl only"),
        (["compare", "none", "none", "--data", "."], "need --suite"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    out = CliRunner().invoke(main, [*args, "--run-dir", str(tmp_path / "run")])
    assert out.exit_code == 1
    assert out.output.startswith("Error: ") and message in out.output
    assert out.output.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--skill", "none", "--protocol", "plain"],
        ["rollout", "--protocol", "plain"],
        ["compare", "none", "none", "--protocol", "plain"],
        ["compare", "none", "none", "--protocol-b", "plain"],  # refused before A is evaluated
        ["evolve", str(ROOT / "skills" / "gsm8k-math"), "--protocol", "plain", "--allow-dirty",
         "--estimate"],
    ],
)  # fmt: skip
def test_cli_refuses_plain_on_spreadsheet(command, tmp_path):
    """A trial: the spreadsheet scorer reads the workbooks the agent writes, which plain (no
    code) never does: every task failed and the zeros read as the model's level."""
    run = tmp_path / "run"
    where = ["--runs-dir", str(run)] if command[0] == "evolve" else ["--run-dir", str(run)]
    out = CliRunner().invoke(
        main, [*command, "--suite", "spreadsheet", "--model", "fake/e", *where]
    )
    assert out.exit_code == 1, out.output
    assert out.output == (
        "Error: --protocol plain cannot pass a spreadsheet task: its scorer reads the files "
        "the agent writes, and plain runs no code; use code, json or tools\n"
    )
    assert not run.exists()


@pytest.mark.parametrize("command", [["eval", "--skill", "none"], ["compare", "none", "none"]])
def test_cli_unknown_suite_lists_the_valid_ones(command, tmp_path):
    out = CliRunner().invoke(main, [*command, "--suite", "nope", "--run-dir", str(tmp_path)])
    assert out.exit_code == 2
    assert "'nope' is not one of 'gsm8k', 'jsonl', 'spreadsheet', 'wikitq'" in out.output


def test_cli_eval_on_a_users_jsonl_tasks_with_numeric_scoring(tmp_path):
    """A user's own tasks: --suite jsonl --data FILE with the scoring rule chosen on the CLI."""
    from toolkit.llm import fake_model

    tasks = tmp_path / "mine.jsonl"
    rows = [{"id": f"q{i}", "question": f"What is {i} times 3?", "answer": 3 * i} for i in range(6)]
    write_jsonl(tasks, rows)

    def reply(messages):
        # Right for even i, in words that only numeric scoring accepts; wrong for odd i.
        user = next(m["content"] for m in messages if m["role"] == "user")
        i = int(re.search(r"What is (\d+) times 3", user).group(1))
        answer = f"It is {3 * i}.0" if i % 2 == 0 else "none"
        return {"thought": "", "cited_sections": [], "tool": "submit", "args": {"answer": answer}}

    common = ["--skill", "none", "--suite", "jsonl", "--data", str(tasks), "--split", "all"]
    with fake_model(reply) as model:
        runner = CliRunner()
        for scoring, passed in (("numeric", 3), ("exact", 0)):
            out = runner.invoke(
                main,
                ["eval", *common, "--scoring", scoring, "--model", model, "--no-cache"]
                + ["--run-dir", str(tmp_path / scoring), "--json"],
            )
            assert out.exit_code == 0, out.output
            summary = json.loads(out.stdout)["summary"]
            assert (summary["suite"], summary["n"], summary["passed"]) == ("jsonl", 6, passed)
        # A --limit beyond the split runs what there is, and says so in one line.
        out = runner.invoke(
            main,
            ["eval", *common, "--limit", "50", "--model", model, "--no-cache", "--json"]
            + ["--run-dir", str(tmp_path / "short")],
        )
        assert out.exit_code == 0, out.output
        notes = [line for line in out.stderr.splitlines() if line.startswith("Note: ")]
        assert notes == ["Note: jsonl split 'all' has 6 tasks, fewer than the 50 asked for; "
                         "using all 6"]  # fmt: skip
        assert json.loads(out.stdout)["summary"]["n"] == 6
        assert "s/task" in out.stderr  # the progress bar, labelled for a person
        assert "eval no skill jsonl/all [" in out.stderr and "eval:" not in out.stderr
        quiet = runner.invoke(
            main,
            ["eval", *common, "--model", model, "--no-cache", "--json", "--no-progress"]
            + ["--run-dir", str(tmp_path / "quiet")],
        )
        assert quiet.exit_code == 0 and "s/task" not in quiet.stderr, quiet.stderr


def test_cli_eval_default_run_dir_is_per_data_file_and_says_what_was_skipped(tmp_path, monkeypatch):
    """Two task files get two default run folders; skipped rows are said once per command."""
    monkeypatch.chdir(tmp_path)
    rows = [{"id": f"q{i}", "question": f"{i}+1?", "answer": i + 1} for i in range(2)]
    write_jsonl(tmp_path / "my.jsonl", [*rows, {"id": "bad", "question": "?"}, "[1]"])
    write_jsonl(tmp_path / "logs.jsonl", [*rows, {"id": "q9", "question": "9+1?", "answer": 10}])
    runner = CliRunner()
    common = ["--split", "all", "--model", "fake/echo", "--no-cache", "--no-progress", "--json"]
    dirs = []
    for name in ("my.jsonl", "logs.jsonl"):
        out = runner.invoke(
            main, ["eval", "--skill", "none", "--suite", "jsonl", "--data", name, *common]
        )
        assert out.exit_code == 0, out.output
        dirs.append(Path(json.loads(out.stdout)["path"]).parts[1])
        notes = [line for line in out.stderr.splitlines() if line.startswith("Note: ")]
        if name == "my.jsonl":
            assert notes == [
                "Note: 2 malformed rows of my.jsonl skipped (see `trace2skill tasks check "
                "--suite jsonl --data my.jsonl`)"
            ]
        else:
            assert notes == []
    assert dirs[0].startswith("eval-jsonl-my-") and dirs[0].endswith("-all-nall-s0")
    assert dirs[1].startswith("eval-jsonl-logs-") and len(set(dirs)) == 2
    manifest = json.loads((tmp_path / "runs" / dirs[0] / "manifest.json").read_text())
    assert [s["config"]["skipped_rows"] for s in manifest["stages"].values()] == [2]
    # compare evaluates both sides in one process: the note comes once.
    shutil.copy(tmp_path / "my.jsonl", tmp_path / "ab.jsonl")
    out = runner.invoke(
        main, ["compare", "none", "none", "--suite", "jsonl", "--data", "ab.jsonl", *common]
    )
    assert out.exit_code == 0, out.output
    assert out.stderr.count("2 malformed rows of ab.jsonl skipped") == 1
    # Without --data the name stays as it was.
    out = runner.invoke(
        main,
        ["eval", "--skill", "none", "--suite", "gsm8k", "--limit", "1", *common[2:]],
    )
    assert out.exit_code == 0, out.output
    assert Path(json.loads(out.stdout)["path"]).parts[1] == "eval-gsm8k-test-n1-s0"


def test_evaluate_rejects_bad_delivery(tmp_path):
    with pytest.raises(EvalError, match="needs a skill"):
        evaluate(None, "gsm8k", "test", run_dir=tmp_path, delivery="system")
    with pytest.raises(EvalError, match="no-skill baseline"):
        evaluate("skills/gsm8k-math", "gsm8k", "test", run_dir=tmp_path, delivery="none")


def test_record_of_flags_model_errors():
    t = _trajectory("t1", False, commit="none").model_copy(
        update={"stop_reason": "error", "error": "timeout"}
    )
    record = record_of(t, "test")
    assert isinstance(record, EvalRecord) and record.error == "timeout" and not record.passed


# ---------------------------------------------------------------------------------------------
# End to end: the real rollouts with the scripted fake model on the vendored gsm8k slice
# ---------------------------------------------------------------------------------------------


def _gsm8k_tasks():
    from toolkit.tasks import VENDORED_DATA_DIR, get_suite

    return get_suite("gsm8k", data_dir=VENDORED_DATA_DIR).load("test").tasks


def _scripted_agent(passing_without: set[str], passing_with: set[str]):
    """A fake model that submits the gold answer for a known subset of tasks, else a wrong one.

    The condition is read off the system prompt: only an agent with a skill gets the
    read_skill_file tool.
    """
    tasks = _gsm8k_tasks()

    def reply(messages):
        system = messages[0]["content"]
        task_text = next(m["content"] for m in messages if m["role"] == "user")
        task = next(t for t in tasks if t.question.strip() in task_text)
        passing = passing_with if "read_skill" in system else passing_without
        answer = task.answers[0] if task.id in passing else "-12345"
        return {
            "thought": "Known.",
            "cited_sections": [],
            "tool": "submit",
            "args": {"answer": answer},
        }

    return reply


@pytest.fixture
def e2e(tmp_path):
    from toolkit.llm import LLMConfig, fake_model
    from toolkit.tasks import VENDORED_DATA_DIR

    ids = [t.id for t in _gsm8k_tasks()]
    without = set(ids[::3])  # every third task passes without the skill
    with_skill = set(ids) - {ids[0]}  # all but the first pass with it
    with fake_model(_scripted_agent(without, with_skill)) as model:
        config = LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache")
        yield {
            "model": model,
            "config": config,
            "data_dir": VENDORED_DATA_DIR,
            "ids": ids,
            "without": without,
            "with": with_skill,
            "run": tmp_path / "run",
        }


def test_evaluate_and_compare_end_to_end(e2e):
    from toolkit.trajectory import read_trajectories

    kwargs = dict(
        run_dir=e2e["run"],
        seed=0,
        limit=8,
        data_dir=e2e["data_dir"],
        llm_config=e2e["config"],
        concurrency=2,
        resamples=2000,
    )
    base = evaluate("none", "gsm8k", "test", e2e["model"], **kwargs)
    skill = evaluate("skills/gsm8k-math", "gsm8k", "test", e2e["model"], **kwargs)

    chosen = base.summary.task_ids
    assert len(chosen) == 8 and set(chosen) <= set(e2e["ids"])
    assert skill.summary.task_ids == chosen  # the same seeded subset for both conditions
    assert base.summary.passed == len(set(chosen) & e2e["without"])
    assert skill.summary.passed == len(set(chosen) & e2e["with"])
    assert [r.passed for r in base.records] == [t in e2e["without"] for t in chosen]
    assert base.summary.delivery == "none" and skill.summary.delivery == "system"
    assert base.summary.model == e2e["model"] and base.tokens_per_task > 0

    # Stored files, keyed by skill commit and split.
    assert base.path == e2e["run"] / "evals" / "none" / "test.jsonl"
    commit = skill.summary.skill_commit
    assert len(commit) == 40 and skill.path == e2e["run"] / "evals" / commit / "test.jsonl"
    lines = [json.loads(x) for x in skill.path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["task"] * 8 + ["summary"]
    trajectories = {
        t.id: t for t in read_trajectories(e2e["run"] / "evals" / "trajectories.jsonl").records
    }
    for line in lines[:-1]:
        t = trajectories[line["trajectory_id"]]
        assert (t.task_id, t.seed, t.model, t.verdict.passed) == (
            line["task_id"],
            line["seed"],
            line["model"],
            line["passed"],
        )
        assert t.skill_commit == commit
    assert load_eval(skill.path) == skill

    comparison = compare(base, skill, resamples=2000)
    p = comparison.paired
    only_b = len([t for t in chosen if t in e2e["with"] and t not in e2e["without"]])
    only_a = len([t for t in chosen if t in e2e["without"] and t not in e2e["with"]])
    assert (p.n, p.only_a, p.only_b) == (8, only_a, only_b)
    assert comparison.dropped == []
    assert comparison.pairs == [(t, 0) for t in chosen]

    # A re-run reuses every trajectory and leaves the eval file byte-identical.
    before = skill.path.read_bytes()
    calls = e2e["model"].calls
    again = evaluate("skills/gsm8k-math", "gsm8k", "test", e2e["model"], **kwargs)
    assert e2e["model"].calls == calls
    assert again.summary == skill.summary and skill.path.read_bytes() == before


def test_cli_eval_and_compare_print_the_figures(e2e):
    runner = CliRunner()
    common = [
        "--suite",
        "gsm8k",
        "--split",
        "test",
        "--limit",
        "9",
        "--run-dir",
        str(e2e["run"]),
        "--data-dir",
        str(e2e["data_dir"]),
        "--model",
        e2e["model"],
        "--no-cache",
        "--resamples",
        "2000",
    ]
    out = runner.invoke(main, ["eval", "--skill", "none", *common])
    assert out.exit_code == 0, out.output
    result = load_eval(e2e["run"] / "evals" / "none" / "test.jsonl")
    rate = result.summary.pass_rate
    expected = (
        f"pass rate {rate.rate:.2f}, bootstrap 95% [{rate.ci.low:.2f}, {rate.ci.high:.2f}] (n=9), "
        f"MDE at this n: {result.mde:.2f}"
    )
    assert expected in out.stdout
    assert result.summary.passed == len(set(result.summary.task_ids) & e2e["without"])

    as_json = runner.invoke(main, ["eval", "--skill", "skills/gsm8k-math", *common, "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["summary"]["n"] == 9 and data["summary"]["delivery"] == "system"

    out = runner.invoke(main, ["compare", "none", "skills/gsm8k-math", *common])
    assert out.exit_code == 0, out.output
    chosen = result.summary.task_ids
    only_b = len([t for t in chosen if t in e2e["with"] and t not in e2e["without"]])
    only_a = len([t for t in chosen if t in e2e["without"] and t not in e2e["with"]])
    assert f"only A passed {only_a}, only B passed {only_b};" in out.stdout
    assert "(n=9 pairs), p=" in out.stdout and "dropped: 0" in out.stdout


def test_cached_replays_are_counted_apart():
    from toolkit.trajectory import Action, Step

    def steps(cached: bool) -> list[Step]:
        return [Step(index=0, action=Action(tool="submit"), cache_hit=cached)]

    fresh = _trajectory("t1", True, commit="none").model_copy(update={"steps": steps(False)})
    replay = _trajectory("t2", True, commit="none").model_copy(
        update={"steps": steps(True), "latency_s": 0.1}
    )
    records = [record_of(fresh, "test"), record_of(replay, "test")]
    assert [(r.cached_steps, r.steps) for r in records] == [(0, 1), (1, 1)]
    s = summarise(
        records,
        suite="gsm8k",
        split="test",
        skill="none",
        skill_commit="none",
        model="fake/m",
        seed=0,
        delivery="none",
        limit=None,
        resamples=100,
    )
    assert s.cached_tasks == 1 and s.seconds_per_fresh_task == 2.0
    assert s.seconds_per_task == pytest.approx(1.05)


def test_cli_eval_of_a_committed_skill_is_the_same_version_as_its_folder(
    e2e, tmp_path, monkeypatch
):
    """--skill REV:PATH evaluates the committed folder; unchanged, it reuses the folder's work."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "skills" / "gsm8k-math", repo / "skills" / "gsm8k-math")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "s0")
    monkeypatch.chdir(repo)
    common = ["--suite", "gsm8k", "--limit", "3", "--data", str(e2e["data_dir"])]
    common += ["--model", e2e["model"], "--no-cache", "--run-dir", str(e2e["run"]), "--json"]
    runner = CliRunner()
    out = runner.invoke(main, ["eval", "--skill", "HEAD:skills/gsm8k-math", *common])
    assert out.exit_code == 0, out.output
    committed = json.loads(out.stdout)["summary"]
    tree = git(repo, "rev-parse", "HEAD:skills/gsm8k-math").strip()
    assert committed["skill_commit"] == tree
    assert committed["skill"] == "gsm8k-math" and committed["n"] == 3

    calls = e2e["model"].calls
    out = runner.invoke(main, ["eval", "--skill", "skills/gsm8k-math", *common])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["summary"] == committed
    assert e2e["model"].calls == calls  # same version id: every rollout reused
    assert skill_commit(load_skill(repo / "skills" / "gsm8k-math")) == tree

    bad = runner.invoke(main, ["eval", "--skill", "HEAD:skills/nope", *common])
    assert bad.exit_code == 1
    assert bad.output == "Error: HEAD has no folder 'skills/nope'\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "local/qwen2.5-coder-1.5b"], 1),
        (["--model", "openai/gpt-4o-mini"], 4),
        (["--model", "local/qwen2.5-coder-1.5b", "--parallel", "3"], 3),
    ],
)
@pytest.mark.parametrize("command", [["eval", "--skill", "none"], ["compare", "none", "none"]])
def test_cli_parallel_default_follows_the_model(command, args, expected, monkeypatch, tmp_path):
    """The embedded local model serves one request at a time: its tasks run one by one."""
    import sys

    from toolkit.errors import ToolkitError

    seen = []

    def fake_evaluate(*_args, concurrency, **_kwargs):
        seen.append(concurrency)
        raise ToolkitError("stop here")

    monkeypatch.setattr(sys.modules["toolkit.evaluate"], "evaluate", fake_evaluate)
    out = CliRunner().invoke(
        main, [*command, "--suite", "gsm8k", "--run-dir", str(tmp_path), *args]
    )
    assert "stop here" in out.output
    assert seen == [expected]


def test_trajectories_show_finds_the_eval_trajectories_of_a_run_dir(tmp_path):
    """A run folder made by `eval` alone keeps its trajectories in evals/: `trajectories show
    RUN_DIR` (the demo's closing hint) lists them and says where they are."""
    from toolkit.llm import fake_model

    tasks = tmp_path / "mine.jsonl"
    write_jsonl(tasks, [{"id": f"q{i}", "question": f"{i}+1?", "answer": i + 1} for i in range(3)])

    def reply(_messages):
        return {"thought": "", "cited_sections": [], "tool": "submit", "args": {"answer": "1"}}

    run_dir = tmp_path / "run"
    runner = CliRunner()
    with fake_model(reply) as model:
        out = runner.invoke(
            main,
            ["eval", "--skill", "none", "--suite", "jsonl", "--data", str(tasks)]
            + ["--split", "all", "--model", model, "--no-cache", "--run-dir", str(run_dir)],
        )
        assert out.exit_code == 0, out.output
    assert not (run_dir / "trajectories.jsonl").exists()
    shown = runner.invoke(main, ["trajectories", "show", str(run_dir)])
    assert shown.exit_code == 0, shown.output
    assert "3 trajectories, 1 passed" in shown.stdout
    assert str(run_dir / "evals" / "trajectories.jsonl") in shown.stderr
    assert " none " in shown.stdout.splitlines()[1]  # the skill column: no skill
    # A run with rollouts of its own shows them, and points at its evaluations (--evals).
    (run_dir / "trajectories.jsonl").write_text("")
    own = runner.invoke(main, ["trajectories", "show", str(run_dir), "--task", "q1"])
    assert own.exit_code == 0 and "0 trajectories, 0 passed (evaluation trajectories: add " \
        "--evals)" in own.stdout  # fmt: skip
    evals = runner.invoke(main, ["trajectories", "show", str(run_dir), "--evals", "--task", "q1"])
    assert evals.exit_code == 0 and "1 trajectory, 0 passed" in evals.stdout
    nope = runner.invoke(main, ["trajectories", "show", str(run_dir), "--evals", "--task", "q9"])
    assert nope.exit_code == 1 and "no trajectory of task 'q9' in" in nope.output
    # A folder that is no run: one line, not "0 trajectories".
    empty = runner.invoke(main, ["trajectories", "show", str(tmp_path)])
    assert empty.exit_code == 1 and "holds no trajectories.jsonl" in empty.output


def test_evaluations_of_two_protocols_in_one_run_stay_apart(tmp_path):
    """`eval --protocol plain` after the default code eval in the same run folder shared its
    manifest stage and eval file key: the latest silently stood for both (a new user's
    report)."""
    from toolkit.evaluate import AmbiguousEvalError, load_eval
    from toolkit.llm import fake_model
    from toolkit.runs import read_manifest

    tasks = tmp_path / "mine.jsonl"
    write_jsonl(
        tasks, [{"id": f"q{i}", "question": f"{i} + {i}?", "answer": 2 * i} for i in range(4)]
    )
    run = tmp_path / "run"
    common = ["--skill", "none", "--suite", "jsonl", "--data", str(tasks), "--split", "all",
              "--run-dir", str(run), "--no-cache", "--no-progress"]  # fmt: skip
    with fake_model(lambda _m: "FINAL ANSWER: 0") as model:
        for protocol in ("code", "plain"):
            out = CliRunner().invoke(
                main, ["eval", *common, "--model", model, "--protocol", protocol]
            )
            assert out.exit_code == 0, out.output
    stages = [s for s in read_manifest(run).stages if s.startswith("eval:")]
    assert len(stages) == 2 and {s.split(":")[4] for s in stages} == {"code", "plain"}
    path = run / "evals" / "none" / "all.jsonl"
    with pytest.raises(AmbiguousEvalError, match="protocol=code.*protocol=plain"):
        load_eval(path)
    plain = load_eval(path, protocol="plain")
    assert plain.summary.protocol == "plain" and {r.protocol for r in plain.records} == {"plain"}
    both = CliRunner().invoke(main, ["compare", str(path), str(path), "--protocol", "plain"])
    assert both.exit_code == 0, both.output


def test_eval_reuses_another_runs_finished_tasks(tmp_path):
    """`--reuse RUN_DIR` copies the tasks another run finished under the same condition (the
    trajectory id) instead of calling the model again; a run from other data is refused."""
    from toolkit.evaluate import load_eval
    from toolkit.llm import fake_model

    tasks = tmp_path / "mine.jsonl"
    write_jsonl(
        tasks, [{"id": f"q{i}", "question": f"{i} + {i}?", "answer": 2 * i} for i in range(4)]
    )
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--skill", "none", "--suite", "jsonl", "--data", str(tasks), "--split", "all",
              "--no-cache", "--no-progress"]  # fmt: skip
    calls = []

    def reply(messages):
        calls.append(messages)
        return "FINAL ANSWER: 2"

    with fake_model(reply) as model:
        out = CliRunner().invoke(
            main, ["eval", *common, "--model", model, "--run-dir", str(first), "--limit", "3"]
        )
        assert out.exit_code == 0, out.output
        ran_first = len(calls)
        assert ran_first >= 3
        # All 4 tasks: the 3 the first run finished are copied, only the 4th calls the model.
        out = CliRunner().invoke(
            main,
            ["eval", *common, "--model", model, "--run-dir", str(second), "--reuse", str(first)],
        )
        assert out.exit_code == 0, out.output
        assert "reused 3 finished tasks of this condition from" in out.output
        assert len(calls) - ran_first == ran_first // 3
        # The copies live in the new run: it stands alone without the first.
        shutil.rmtree(first)
        again = load_eval(second / "evals" / "none" / "all.jsonl")
        assert again.summary.n == 4 and again.summary.passed == 1
        before = len(calls)
        out = CliRunner().invoke(
            main, ["eval", *common, "--model", model, "--run-dir", str(second)]
        )
        assert out.exit_code == 0 and len(calls) == before  # all four now finished here

        # Another run's tasks from other data are never taken for this run's.
        write_jsonl(tasks, [{"id": "q1", "question": "1 + 1?", "answer": 3}])
        other = tmp_path / "other"
        refused = CliRunner().invoke(
            main,
            ["eval", *common, "--model", model, "--run-dir", str(other), "--reuse", str(second)],
        )
    assert refused.exit_code == 1
    assert "cannot reuse" in refused.output and "mine.jsonl differ" in refused.output
    assert "Traceback" not in refused.output
    empty = tmp_path / "empty"
    empty.mkdir()
    with fake_model(reply) as model:
        nothing = CliRunner().invoke(
            main,
            ["eval", *common, "--model", model, "--run-dir", str(other), "--reuse", str(empty)],
        )
    assert nothing.exit_code == 1 and "holds no trajectories.jsonl" in nothing.output


def test_reuse_refuses_a_run_of_another_data_file_with_the_same_task_ids(tmp_path):
    """A run of a.jsonl was reused for b.jsonl: only data files both runs read were compared,
    so two JSONL files with the same ids ("q1") passed, and a.jsonl's answers were copied in
    as b.jsonl's results."""
    from toolkit.llm import fake_model

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(first, [{"id": "q1", "question": "1 + 1?", "answer": 2}])
    write_jsonl(second, [{"id": "q1", "question": "5 + 5?", "answer": 10}])
    common = ["--skill", "none", "--suite", "jsonl", "--split", "all", "--no-cache",
              "--no-progress"]  # fmt: skip
    with fake_model(lambda messages: "FINAL ANSWER: 2") as model:
        out = CliRunner().invoke(
            main,
            ["eval", *common, "--data", str(first), "--model", model,
             "--run-dir", str(tmp_path / "a")],
        )  # fmt: skip
        assert out.exit_code == 0, out.output
        refused = CliRunner().invoke(
            main,
            ["eval", *common, "--data", str(second), "--model", model,
             "--run-dir", str(tmp_path / "b"), "--reuse", str(tmp_path / "a")],
        )  # fmt: skip
    assert refused.exit_code == 1, refused.output
    assert "cannot reuse" in refused.output and "b.jsonl differ" in refused.output
    assert "it read a.jsonl" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "b").exists()
    # Its trajectory file alone (no splits.json to check) is no source either.
    with fake_model(lambda messages: "FINAL ANSWER: 2") as model:
        as_file = CliRunner().invoke(
            main,
            ["eval", *common, "--data", str(second), "--model", model,
             "--run-dir", str(tmp_path / "b"), "--reuse",
             str(tmp_path / "a" / "evals" / "trajectories.jsonl")],
        )  # fmt: skip
    assert as_file.exit_code == 2 and "is a file" in as_file.output, as_file.output
    assert not (tmp_path / "b").exists()


def test_reuse_needs_a_run_folder_that_shows_its_data(tmp_path):
    """The library took a bare trajectory file, or a folder with no splits.json, without
    the data check the command line makes (task ids alone recur across data files)."""
    from toolkit.rollout import RolloutError, reuse_sources

    run = tmp_path / "run"
    (run / "evals").mkdir(parents=True)
    (run / "evals" / "trajectories.jsonl").write_text("")
    ours = {"a.jsonl": "1"}
    with pytest.raises(RolloutError, match="no splits.json to show which data files"):
        reuse_sources([run], ours)
    with pytest.raises(RolloutError, match="give the run folder it belongs to"):
        reuse_sources([run / "evals" / "trajectories.jsonl"], ours)
    # Without data to check against (a plain listing), both are sources.
    assert len(reuse_sources([run, run / "evals" / "trajectories.jsonl"])) == 2


def test_a_run_folder_scored_one_way_is_not_read_back_under_another(tmp_path, monkeypatch):
    """A trial's finding: `eval --scoring exact` then `eval --scoring numeric` on the same
    default run folder printed the exact verdicts again (0 of 4 for answers numeric passes):
    a finished task keeps the verdict it got, and its id does not name the scoring rule."""
    from toolkit.llm import fake_model

    monkeypatch.chdir(tmp_path)
    write_jsonl(
        tmp_path / "units.jsonl",
        [{"id": f"q{i}", "question": f"{i} + {i}?", "answer": 2 * i} for i in range(4)],
    )
    common = ["--skill", "none", "--suite", "jsonl", "--data", "units.jsonl", "--split", "all",
              "--no-cache", "--no-progress", "--json"]  # fmt: skip

    def reply(messages):
        user = next(m["content"] for m in messages if m["role"] == "user")
        i = int(re.search(r"(\d+) \+", user).group(1))
        return f"FINAL ANSWER: {2 * i} units"  # passes numeric scoring only

    passed = {}
    with fake_model(reply) as model:
        for scoring in ("exact", "numeric"):
            args = ["eval", *common, "--scoring", scoring, "--model", model]
            out = CliRunner().invoke(main, args)
            assert out.exit_code == 0, out.output
            result = json.loads(out.stdout)
            passed[scoring] = (result["summary"]["passed"], Path(result["path"]).parts[1])
        assert passed["exact"][0] == 0 and passed["numeric"][0] == 4
        assert passed["numeric"][1].startswith("eval-jsonl-units-")
        assert "-numeric-all-nall-s0" in passed["numeric"][1]
        assert passed["exact"][1].endswith("-all-nall-s0") and "exact" not in passed["exact"][1]
        # A folder named on purpose is refused, not read back under the other rule...
        folder = str(tmp_path / "runs" / passed["exact"][1])
        again = CliRunner().invoke(
            main, ["eval", *common, "--scoring", "numeric", "--model", model, "--run-dir", folder]
        )
        assert again.exit_code == 1, again.output
        assert "scored answers with scoring=exact" in again.output
        assert "Traceback" not in again.output
        # ... and so is a --reuse source scored another way.
        reused = CliRunner().invoke(
            main,
            ["eval", *common, "--scoring", "numeric", "--model", model,
             "--run-dir", str(tmp_path / "fresh"), "--reuse", folder],
        )  # fmt: skip
        assert reused.exit_code == 1, reused.output
        assert "cannot reuse" in reused.output and "scoring=exact" in reused.output


def test_evaluate_with_memory_shows_each_task_its_retrieved_lesson(tmp_path):
    """The retrieval memory baseline: S0 plus each task's top-1 lesson of a bank in the
    system prompt, recorded in the trajectory, stored as its own condition."""
    from tests.test_memory import LESSONS, source_run
    from toolkit.llm import LLMConfig, fake_model
    from toolkit.memory import Memory, MemoryBankError, build_bank
    from toolkit.rollout import read_manifest
    from toolkit.tasks import VENDORED_DATA_DIR
    from toolkit.trajectory import read_trajectories

    bank = build_bank(source_run(tmp_path))
    tasks = {t.question.strip(): t for t in _gsm8k_tasks()}
    prompts: dict[str, str] = {}

    def reply(messages):
        task_text = next(m["content"] for m in messages if m["role"] == "user")
        task = next(t for q, t in tasks.items() if q in task_text)
        prompts[task.id] = messages[0]["content"]
        return {"thought": "k", "cited_sections": [], "tool": "submit",
                "args": {"answer": task.answers[0]}}  # fmt: skip

    run = tmp_path / "run"
    with fake_model(reply) as model:
        kwargs = dict(
            run_dir=run, seed=0, limit=6, data_dir=VENDORED_DATA_DIR, concurrency=2,
            llm_config=LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache"),
            resamples=500,
        )  # fmt: skip
        s0 = evaluate("skills/gsm8k-math", "gsm8k", "test", model, **kwargs)
        s0_bytes, s0_prompts = s0.path.read_bytes(), dict(prompts)
        memory = Memory(bank=bank)
        with_memory = evaluate("skills/gsm8k-math", "gsm8k", "test", model, memory=memory, **kwargs)
        calls = model.calls
        again = evaluate("skills/gsm8k-math", "gsm8k", "test", model, memory=memory, **kwargs)
        assert model.calls == calls and again.summary == with_memory.summary  # reused by id
        # The bank learned from train tasks: evaluating it on them is refused, no call made.
        splits = (run / "splits.json").read_bytes()
        with pytest.raises(MemoryBankError, match=r"learned from 1 of the tasks.*gsm8k-test-0"):
            evaluate("skills/gsm8k-math", "gsm8k", "train", model, memory=memory, **kwargs)
        assert model.calls == calls and (run / "splits.json").read_bytes() == splits
    condition = memory.condition(s0.summary.skill_commit)
    assert with_memory.summary.skill_commit == condition and condition.startswith("memory-")
    assert with_memory.path == run / "evals" / condition / "test.jsonl"
    assert with_memory.summary.task_ids == s0.summary.task_ids
    assert with_memory.summary.delivery == "system" and with_memory.summary.skill == "gsm8k-math"
    assert s0.path.read_bytes() == s0_bytes and load_eval(s0.path) == s0  # S0's file untouched
    # Without memory the prompt is S0's alone; with it, S0's plus the one retrieved lesson.
    records = read_trajectories(run / "evals" / "trajectories.jsonl").records
    by_id = {t.id: t for t in records}
    assert len(records) == 12 and not any("memory" in by_id[r.trajectory_id].metadata
                                          for r in s0.records)  # fmt: skip
    items = {i.id: i for i in bank.items}
    shown_any = 0
    for record in with_memory.records:
        t = by_id[record.trajectory_id]
        shown = t.metadata["memory"]
        assert shown["condition"] == condition == t.skill_commit
        assert shown["skill_commit"] == s0.summary.skill_commit and shown["k"] == 1
        assert shown["bank"] == bank.info.id and shown["retriever"] == "bm25"
        assert len(shown["items"]) <= 1 and len(shown["scores"]) == len(shown["items"])
        before = s0_prompts[t.task_id]
        assert "# Memory" not in before
        prompt = prompts[t.task_id]
        assert prompt.startswith(before)
        for item_id, item in items.items():
            assert (item.content in prompt) == (item_id in shown["items"])
        shown_any += bool(shown["items"])
    assert shown_any >= 1 and set(LESSONS) == {i.task_id for i in bank.items}
    manifest = read_manifest(run)
    stage = next(k for k in manifest.stages if condition in k)
    assert manifest.stages[stage].config["memory"]["bank"] == bank.info.id
    assert all("memory" not in r.config for k, r in manifest.stages.items() if k != stage)


def test_cli_eval_with_memory(tmp_path):
    from tests.test_memory import source_run
    from toolkit.memory import build_bank
    from toolkit.tasks import VENDORED_DATA_DIR

    run = source_run(tmp_path)
    common = ["eval", "--skill", "skills/gsm8k-math", "--suite", "gsm8k", "--data",
              str(VENDORED_DATA_DIR), "--limit", "2", "--run-dir", str(tmp_path / "ev"),
              "--model", "fake/echo", "--no-progress"]  # fmt: skip
    runner = CliRunner()
    missing = runner.invoke(main, [*common, "--memory", str(run)])
    assert missing.exit_code == 1 and f"trace2skill memory build {run}" in missing.output
    alone = runner.invoke(main, [*common, "--memory-k", "2"])
    assert alone.exit_code == 1 and "--memory-k choose how --memory RUN_DIR retrieves" in (
        alone.output
    )
    build_bank(run)
    result = runner.invoke(main, [*common, "--memory", str(run), "--memory-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["summary"]["skill_commit"].startswith("memory-")
    assert "/evals/memory-" in out["path"] and out["summary"]["n"] == 2
    text = runner.invoke(main, [*common, "--memory", str(run), "--memory-k", "2"])
    assert "gsm8k-math + memory-" in text.output
