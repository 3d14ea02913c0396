import json

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.evaluate import (
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
from toolkit.trajectory import Trajectory, Verdict, trajectory_id


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
    assert result.mde is not None and 0.5 < result.mde < 0.7
    assert s.task_ids == [f"t{i}" for i in range(10)]
    assert s.schema_version == 1 and s.kind == "summary"


def test_summarise_empty_is_defined():
    result = _result({}, commit="none")
    assert result.n == 0 and result.rate is None and result.mde is None
    assert result.tokens_per_task == 0.0 and result.summary.mean_score is None


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
    assert all(x["schema_version"] == 1 for x in lines)
    # A wider evaluation of the same condition appends only what is new.
    second = _result({"t1": True, "t2": False, "t3": True}, commit="abc", path=path)
    store(second, path)
    after = path.read_bytes()
    assert after.startswith(before)
    assert [json.loads(x)["kind"] for x in after.decode().splitlines()[3:]] == ["task", "summary"]
    loaded = load_eval(path)
    assert loaded.summary == second.summary
    assert [r.task_id for r in loaded.records] == ["t1", "t2", "t3"]


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--skill", "none", "--suite", "nope"], "unknown task suite 'nope'"),
        (["eval", "--skill", "none", "--suite", "gsm8k", "--split", "dev"], "no split 'dev'"),
        (["eval", "--skill", "none"], "--suite is required"),
        (["compare", "none", "skills/gsm8k-math"], "--suite is required"),
        (["compare", "none", "none", "--suite", "nope"], "unknown task suite"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    out = CliRunner().invoke(main, [*args, "--run-dir", str(tmp_path / "run")])
    assert out.exit_code == 1
    assert out.output.startswith("Error: ") and message in out.output
    assert out.output.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing half-written


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
