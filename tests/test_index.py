import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.evaluate import EvalResult, record_of, store, summarise
from toolkit.index import INDEX_DIR, RunIndexError, build_index, connect, run_query
from toolkit.llm.calls import LLMCallRecord
from toolkit.queries import cost_by_model, flipped_tasks, pass_rate_by_skill, section_usage
from toolkit.rollout import Manifest
from toolkit.stats import pass_rate
from toolkit.trajectory import (
    Action,
    SectionUse,
    Step,
    Trajectory,
    Verdict,
    append_jsonl,
    trajectory_id,
)

A, B = "a" * 40, "b" * 40


def _trajectory(
    task: str, passed: bool, commit: str, *, seed: int = 0, uses=(), protocol: str = "code"
) -> Trajectory:
    steps = [
        Step(
            index=0,
            thought="look",
            action=Action(tool="python", args={"code": "print(1)"}),
            observation="1",
            tokens_in=10,
            tokens_out=5,
            latency_s=0.5,
            call_id=f"c-{task}-{commit[0]}-0",
        ),
        Step(
            index=1,
            action=Action(tool="submit", args={"answer": "42"}),
            tokens_in=20,
            tokens_out=3,
            latency_s=0.25,
            cache_hit=True,
        ),
    ]
    return Trajectory(
        id=trajectory_id("gsm8k", task, commit, "fake/m", seed, "system", protocol),
        task_id=task,
        suite="gsm8k",
        split="test",
        skill_name="s",
        skill_commit=commit,
        model="fake/m",
        seed=seed,
        delivery="system",
        protocol=protocol,
        steps=steps,
        final_answer="42",
        verdict=Verdict(passed=passed, score=float(passed)),
        section_uses=[SectionUse(step=0, kind=k, file="SKILL.md", section_id=s) for k, s in uses],
        tokens_in=30,
        tokens_out=8,
        cost_usd=0.01,
        latency_s=1.5,
        stop_reason="submitted",
    )


def _call(i: int, model: str, latency: float, *, cache_hit=False, error=None) -> LLMCallRecord:
    return LLMCallRecord(
        call_id=f"{model}-{i}",
        model=model,
        tokens_in=100,
        tokens_out=10,
        cost_usd=0.5,
        latency_s=latency,
        started_at=1.0,
        ended_at=1.0 + latency,
        cache_hit=cache_hit,
        error=error,
    )


def _write_run(runs: Path, run_id: str, trajectories, *, calls=(), evals=()) -> Path:
    run = runs / run_id
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(
        Manifest(
            run_id=run_id, created_at="2026-12-05T00:00:00+00:00", toolkit_version="0.1"
        ).model_dump_json()
    )
    append_jsonl(run / "trajectories.jsonl", trajectories)
    if calls:
        append_jsonl(run / "llm_calls.jsonl", calls)
    if evals:
        append_jsonl(run / "evals" / "trajectories.jsonl", evals)
        records = [record_of(t, "test") for t in evals]
        summary = summarise(
            records,
            suite="gsm8k",
            split="test",
            skill="s",
            skill_commit=evals[0].skill_commit,
            model="fake/m",
            seed=0,
            delivery="system",
            limit=None,
            resamples=100,
        )
        path = run / "evals" / evals[0].skill_commit / "test.jsonl"
        store(EvalResult(summary=summary, records=records), path)
    return run


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    # Run 1, skill A: t1 pass, t2 fail, t3 fail; run 2, skill B: t1 pass, t2 pass, t3 fail.
    _write_run(
        runs,
        "r1",
        [
            _trajectory("t1", True, A, uses=[("read", "plan"), ("cited", "plan")]),
            _trajectory("t2", False, A, uses=[("read", "plan")]),
            _trajectory("t3", False, A),
        ],
        calls=[_call(0, "fake/m", 1.0), _call(1, "fake/m", 3.0, cache_hit=True)],
    )
    _write_run(
        runs,
        "r2",
        [
            _trajectory("t1", True, B),
            _trajectory("t2", True, B, uses=[("read", "check")]),
            _trajectory("t3", False, B),
        ],
        calls=[_call(0, "other/x", 2.0, error="Timeout")],
        evals=[_trajectory("t4", True, B, seed=1), _trajectory("t5", False, B, seed=1)],
    )
    return runs


def _rows(runs, sql):
    with connect(runs) as con:
        return con.execute(sql).fetchall()


def test_tables_hold_the_runs_rows(runs):
    report = build_index(runs)
    assert sorted(report.read) == ["r1", "r2"] and report.runs == 2 and report.problems == []
    assert (runs / INDEX_DIR / "r1" / "steps.parquet").is_file()
    assert _rows(
        runs,
        "SELECT run_id, trajectories, eval_trajectories, evals, llm_calls FROM runs ORDER BY 1",
    ) == [
        ("r1", 3, 0, 0, 2),
        ("r2", 3, 2, 2, 1),
    ]
    assert _rows(runs, "SELECT origin, count(*) FROM trajectories GROUP BY 1 ORDER BY 1") == [
        ("eval", 2),
        ("rollout", 6),
    ]
    t1 = _trajectory("t1", True, A)
    row = _rows(
        runs,
        f"SELECT task_id, skill_commit, passed, score, n_steps, tokens_in, cost_usd, stop_reason, "
        f"protocol FROM trajectories WHERE id = '{t1.id}'",
    )
    assert row == [("t1", A, True, 1.0, 2, 30, 0.01, "submitted", "code")]
    assert _rows(
        runs,
        f"SELECT step, tool, args, tokens_in, latency_s, cache_hit, call_id FROM steps "
        f"WHERE trajectory_id = '{t1.id}' ORDER BY step",
    ) == [
        (0, "python", '{"code":"print(1)"}', 10, 0.5, False, "c-t1-a-0"),
        (1, "submit", '{"answer":"42"}', 20, 0.25, True, None),
    ]
    assert _rows(runs, "SELECT count(*) FROM steps") == [(16,)]
    assert _rows(runs, "SELECT skill_commit, kind, ref FROM section_uses ORDER BY ALL") == [
        (A, "cited", "SKILL.md#plan"),
        (A, "read", "SKILL.md#plan"),
        (A, "read", "SKILL.md#plan"),
        (B, "read", "SKILL.md#check"),
    ]
    assert _rows(runs, "SELECT task_id, passed, seed, tokens FROM evals ORDER BY 1") == [
        ("t4", True, 1, 38),
        ("t5", False, 1, 38),
    ]
    assert _rows(
        runs, "SELECT model, count(*), sum(tokens_in) FROM llm_calls GROUP BY 1 ORDER BY 1"
    ) == [
        ("fake/m", 2, 200),
        ("other/x", 1, 100),
    ]


def test_reindex_reads_only_new_or_changed_runs(runs):
    build_index(runs)
    again = build_index(runs)
    assert again.read == [] and again.unchanged == 2 and again.runs == 2
    mtime = os.stat(runs / INDEX_DIR / "r1" / "runs.parquet").st_mtime_ns

    append_jsonl(runs / "r2" / "trajectories.jsonl", _trajectory("t9", True, B))
    _write_run(runs, "r3", [_trajectory("t1", False, A)])
    changed = build_index(runs)
    assert changed.read == ["r2", "r3"] and changed.unchanged == 1
    assert os.stat(runs / INDEX_DIR / "r1" / "runs.parquet").st_mtime_ns == mtime
    assert _rows(runs, "SELECT run_id, trajectories FROM runs ORDER BY 1") == [
        ("r1", 3),
        ("r2", 4),
        ("r3", 1),
    ]

    # A deleted run leaves the index; no temp folders are left behind.

    shutil.rmtree(runs / "r3")
    removed = build_index(runs)
    assert removed.removed == ["r3"] and removed.runs == 2
    assert sorted(p.name for p in (runs / INDEX_DIR).iterdir()) == ["r1", "r2", "state.json"]


def test_a_run_whose_process_died_is_read_again_as_interrupted(runs):
    """Found by a new-user trial: after a SIGKILL the index (and the app) showed the run as
    running for good; no file changed, so the incremental index never read it again."""
    import subprocess
    import sys

    from toolkit.runs import update_stage

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        update_stage(runs / "r1", "evolve", status="running", config={}, pid=worker.pid)
        build_index(runs)
        status = (
            "SELECT json_extract_string(stages, '$.evolve.status') FROM runs WHERE run_id = 'r1'"
        )
        assert _rows(runs, status) == [("running",)]
    finally:
        worker.kill()
        worker.wait()
    again = build_index(runs)
    assert again.read == ["r1"]  # no file changed; its process did
    assert _rows(runs, status) == [("interrupted",)]
    assert build_index(runs).read == []  # and then it is settled


def test_corrupt_lines_and_runs_are_reported_and_skipped(runs):
    with open(runs / "r1" / "trajectories.jsonl", "ab") as fh:
        fh.write(b'{"not": "a trajectory"}\n{"id": "torn')  # a bad line, then a torn tail
    with open(runs / "r2" / "llm_calls.jsonl", "ab") as fh:
        fh.write(b"garbage\n")
    _write_run(runs, "broken", [_trajectory("t1", True, A)])
    (runs / "broken" / "manifest.json").write_text("{half")
    (runs / "not-a-run").mkdir()  # no manifest: not a run at all

    report = build_index(runs)
    assert sorted(report.read) == ["r1", "r2"] and report.skipped == ["broken"]
    assert report.skipped_lines == 3
    assert any("broken" in p and "manifest" in p for p in report.problems)
    assert any("trajectories.jsonl:4" in p for p in report.problems)
    assert any("llm_calls.jsonl:2" in p for p in report.problems)
    assert _rows(runs, "SELECT run_id, trajectories, skipped_lines FROM runs ORDER BY 1") == [
        ("r1", 3, 2),
        ("r2", 3, 1),
    ]
    # A CI job asks for a failure: --strict exits 1 (the index is still written).
    strict = CliRunner().invoke(main, ["index", str(runs), "--strict", "--no-progress"])
    assert strict.exit_code == 1 and "--strict: 1 runs and 3 corrupt lines" in strict.output
    # Nothing changed, so nothing was read now; the summary still counts the index's corrupt
    # lines as --strict does (it said "0 corrupt lines skipped", then "3 ... were skipped").
    assert "1 unchanged" not in strict.output and "2 unchanged" in strict.output
    assert "1 skipped, 3 corrupt lines skipped (0 in the runs read now)" in strict.output
    assert CliRunner().invoke(main, ["index", str(runs), "--no-progress"]).exit_code == 0

    # The broken run is tried again each time, and indexed once it is repaired.
    assert build_index(runs).skipped == ["broken"]
    (runs / "broken" / "manifest.json").write_text(
        Manifest(run_id="broken", created_at="x", toolkit_version="0.1").model_dump_json()
    )
    assert build_index(runs).read == ["broken"]


def test_a_missing_file_is_an_empty_table(tmp_path):
    runs = tmp_path / "runs"
    run = _write_run(runs, "r1", [])
    (run / "trajectories.jsonl").unlink(missing_ok=True)
    report = build_index(runs)
    assert report.read == ["r1"] and report.problems == []
    assert _rows(runs, "SELECT count(*) FROM trajectories") == [(0,)]
    assert _rows(runs, "SELECT count(*) FROM llm_calls") == [(0,)]


def test_schema_change_rebuilds_everything(runs):
    build_index(runs)
    state = runs / INDEX_DIR / "state.json"
    data = json.loads(state.read_text())
    data["schema_version"] = 0
    state.write_text(json.dumps(data))
    assert sorted(build_index(runs).read) == ["r1", "r2"]


def test_no_index_and_bad_sql_are_one_line(tmp_path, runs):
    with pytest.raises(RunIndexError, match="no index"):
        connect(tmp_path)
    with pytest.raises(RunIndexError, match="runs folder not found"):
        build_index(tmp_path / "nope")
    # A run folder instead of its parent: refused before anything is written into it.
    run_dir = next(p for p in runs.iterdir() if (p / "manifest.json").is_file())
    with pytest.raises(RunIndexError, match="is a run folder; .*trace2skill index "):
        build_index(run_dir)
    assert not (run_dir / ".index").exists()
    build_index(runs)
    with connect(runs) as con, pytest.raises(RunIndexError, match="query failed") as err:
        run_query(con, "SELECT nope FROM trajectories")
    assert "\n" not in str(err.value)
    # One read at a time: nothing empty, several statements or a write (COPY wrote files).
    target = tmp_path / "out.csv"
    with connect(runs) as con:
        for sql, message in (
            ("", "empty query"),
            (" ; ", "empty query"),
            ("SELECT 1; SELECT 2", "2 statements"),
            (f"COPY (SELECT 1) TO '{target}'", "only reads are run"),
            ("CREATE TABLE t (a INT)", "only reads are run"),
        ):
            with pytest.raises(RunIndexError, match=message):
                run_query(con, sql)
        assert not target.exists()
        assert run_query(con, "WITH a AS (SELECT 1 AS x) SELECT x FROM a")["x"].tolist() == [1]


def test_pass_rate_by_skill_never_pools_runs_or_splits(tmp_path):
    """Two identical runs doubled n and narrowed the CI; rollouts on the evolve split were
    pooled with evaluations on the test split."""
    runs = tmp_path / "runs"
    tasks = [_trajectory(t, t != "t3", A) for t in ("t1", "t2", "t3")]
    _write_run(runs, "r1", tasks)
    _write_run(runs, "r2", tasks)
    train = [_trajectory(t, True, A).model_copy(update={"split": "train"}) for t in ("t8", "t9")]
    _write_run(runs, "r3", train, evals=tasks)
    build_index(runs)
    with connect(runs) as con:
        rows = [(r.run_id, r.origin, r.split, r.n, r.passed) for r in pass_rate_by_skill(con)]
        once = pass_rate([True, True, False])
        assert all(r.ci_low == once.ci.low for r in pass_rate_by_skill(con) if r.n == 3)
    assert rows == [
        ("r1", "rollout", "test", 3, 2),
        ("r2", "rollout", "test", 3, 2),
        ("r3", "eval", "test", 3, 2),
        ("r3", "rollout", "train", 2, 2),
    ]


def test_queries(runs):
    build_index(runs)
    with connect(runs) as con:
        rates = {(r.skill_commit, r.n, r.passed) for r in pass_rate_by_skill(con, origin="rollout")}
        assert rates == {(A, 3, 1), (B, 3, 2)}
        # Without an origin, B's rollouts and evaluations are two rows, not one pool.
        both = {(r.skill_commit, r.origin): r for r in pass_rate_by_skill(con)}
        assert sorted(both) == [(A, "rollout"), (B, "eval"), (B, "rollout")]
        expected = pass_rate([True, True, False])
        rollouts = both[(B, "rollout")]
        assert (rollouts.run_id, rollouts.split, rollouts.n) == ("r2", "test", 3)
        assert rollouts.rate == expected.rate
        assert rollouts.wilson_low == pytest.approx(expected.wilson.low)
        assert rollouts.ci_low <= rollouts.rate <= rollouts.ci_high
        assert (both[(B, "eval")].n, both[(B, "eval")].passed) == (2, 1)

        flips = flipped_tasks(con, A[:7], B[:7])
        assert [(f.task_id, f.direction) for f in flips] == [("t2", "fixed")]
        assert (flips[0].protocol, flips[0].seed) == ("code", 0)
        assert [(f.task_id, f.direction) for f in flipped_tasks(con, B, A)] == [("t2", "broken")]

        usage = {(u.skill_commit, u.ref, u.kind): u for u in section_usage(con)}
        read_plan = usage[(A, "SKILL.md#plan", "read")]
        assert (read_plan.uses, read_plan.trajectories, read_plan.pass_rate) == (2, 2, 0.5)
        assert usage[(A, "SKILL.md#plan", "cited")].pass_rate == 1.0
        assert usage[(B, "SKILL.md#check", "read")].trajectories == 1

        cost = {c.model: c for c in cost_by_model(con)}
        fake = cost["fake/m"]
        assert (fake.calls, fake.cache_hits, fake.errors, fake.tokens_in) == (2, 1, 0, 200)
        assert fake.cost_usd == pytest.approx(1.0)
        assert fake.latency_mean_s == pytest.approx(2.0) and fake.latency_p50_s == 2.0
        assert cost["other/x"].errors == 1


def test_cli_index_and_query(runs):
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(runs)])
    assert result.exit_code == 0, result.output
    assert "2 read, 0 unchanged" in result.output and "trajectories 8" in result.output
    again = runner.invoke(main, ["index", str(runs), "--no-progress"])
    assert "0 read, 2 unchanged" in again.output and "[" not in again.stderr

    sql = "SELECT run_id, count(*) AS n FROM trajectories GROUP BY 1 ORDER BY 1"
    csv = runner.invoke(main, ["query", sql, "--runs-dir", str(runs), "--format", "csv"])
    assert csv.exit_code == 0 and csv.output == "run_id,n\nr1,3\nr2,5\n"
    js = runner.invoke(main, ["query", sql, "--runs-dir", str(runs), "--format", "json"])
    assert json.loads(js.output) == [{"run_id": "r1", "n": 3}, {"run_id": "r2", "n": 5}]
    table = runner.invoke(main, ["query", sql, "--runs-dir", str(runs)])
    assert table.output.split() == ["run_id", "n", "r1", "3", "r2", "5"]
    nulls = "SELECT 'a' AS k, NULL::DOUBLE AS x UNION ALL SELECT 'b', 1.5 ORDER BY k"
    table = runner.invoke(main, ["query", nulls, "--runs-dir", str(runs)])
    assert table.output.split() == ["k", "x", "a", "None", "b", "1.5"]
    # sum() of integers is a HUGEINT, which pandas made a float: 4 printed as 4.0.
    sums = "SELECT run_id, sum(passed::INT) AS p, sum(n_steps) FILTER (WHERE false) AS none "
    sums += "FROM trajectories GROUP BY 1 ORDER BY 1"
    table = runner.invoke(main, ["query", sums, "--runs-dir", str(runs)])
    assert table.output.split() == ["run_id", "p", "none", "r1", "1", "None", "r2", "3", "None"]
    csv = runner.invoke(main, ["query", sums, "--runs-dir", str(runs), "--format", "csv"])
    assert csv.output == "run_id,p,none\nr1,1,\nr2,3,\n"
    js = runner.invoke(main, ["query", sums, "--runs-dir", str(runs), "--format", "json"])
    assert json.loads(js.output)[1] == {"run_id": "r2", "p": 3, "none": None}
    huge = "SELECT 170141183460469231731687303715884105727::HUGEINT AS h"  # beyond 64 bits
    assert runner.invoke(main, ["query", huge, "--runs-dir", str(runs)]).exit_code == 0

    bad = runner.invoke(main, ["query", "SELEC 1", "--runs-dir", str(runs)])
    assert bad.exit_code == 1 and bad.output.startswith("Error: query failed")
    assert "Traceback" not in bad.output and bad.output.count("\n") == 1


def test_index_of_a_real_evaluation_with_the_fake_model(tmp_path):
    from tests.test_evaluate import _gsm8k_tasks, _scripted_agent
    from toolkit.evaluate import evaluate
    from toolkit.llm import LLMConfig, fake_model
    from toolkit.tasks import VENDORED_DATA_DIR

    ids = [t.id for t in _gsm8k_tasks()]
    runs = tmp_path / "runs"
    with fake_model(_scripted_agent(set(ids[::2]), set(ids))) as model:
        config = LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache")
        kwargs = dict(
            run_dir=runs / "run1",
            limit=4,
            data_dir=VENDORED_DATA_DIR,
            llm_config=config,
            concurrency=1,
            resamples=200,
        )
        base = evaluate("none", "gsm8k", "test", model, **kwargs)
        skill = evaluate("skills/gsm8k-math", "gsm8k", "test", model, **kwargs)
    report = build_index(runs)
    assert report.read == ["run1"] and report.problems == []
    with connect(runs) as con:
        got = {r.skill_commit: (r.n, r.passed) for r in pass_rate_by_skill(con, origin="eval")}
        assert got == {
            "none": (4, base.summary.passed),
            skill.summary.skill_commit: (4, skill.summary.passed),
        }
        evals = con.execute("SELECT count(*), sum(passed::INT) FROM evals").fetchone()
        assert evals == (8, base.summary.passed + skill.summary.passed)
        calls = con.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
        steps = con.execute("SELECT count(*) FROM steps").fetchone()[0]
        # One model call per step; the code protocol sends the first answer (given before
        # any code ran) back once, so each task has two steps.
        assert calls == steps == 16


def test_readers_see_whole_runs_only(runs):
    build_index(runs)
    with connect(runs) as con:
        # A half-written compaction (a build killed mid-run) is never read...
        half = runs / INDEX_DIR / ".tmp-r9-x"
        half.mkdir()
        shutil.copy(runs / INDEX_DIR / "r1" / "runs.parquet", half / "runs.parquet")
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        # ...and a run compacted after connect() shows up in the open reader.
        _write_run(runs, "r3", [_trajectory("t1", False, A)])
        build_index(runs)
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (3,)
    assert not half.exists()  # the next build cleared the leftover


def test_documented_pass_rate_queries_do_not_pool_rollouts_with_evaluations(runs):
    """README's first query averaged `passed` over every trajectory: S0's rollouts on the
    evolve split with the test evaluations, while S* has evaluations only."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    helptext = CliRunner().invoke(main, ["query", "--help"]).output
    queries = [
        " ".join(q.split())
        for text in (readme, helptext)
        for q in re.findall(r'trace2skill query "([^"]+)"', text)
    ]
    build_index(runs)
    with connect(runs) as con:
        for sql in queries:
            run_query(con, sql)  # every documented query runs
    rates = [q for q in queries if "FROM trajectories" in q and "avg(passed" in q]
    assert rates and [q for q in rates if "WHERE origin = 'eval'" not in q] == []


def test_flipped_tasks_compare_one_agent_at_a_time(tmp_path):
    """Flips pooled protocols (and seeds): A's t2 failed under code and passed under plain,
    so its pooled rate 0.5 hid the code agent's flip to B (an analyst's finding)."""
    runs = tmp_path / "runs"
    _write_run(runs, "r1", [_trajectory("t2", False, A), _trajectory("t3", True, A)])
    _write_run(runs, "r2", [_trajectory("t2", True, B), _trajectory("t3", True, B)])
    _write_run(runs, "r3", [_trajectory("t2", True, A, protocol="plain")])
    build_index(runs)
    with connect(runs) as con:
        flips = flipped_tasks(con, A, B)
    assert [(f.task_id, f.protocol, f.direction) for f in flips] == [("t2", "code", "fixed")]


def _seeded_eval(run: Path, commit: str, passes: list[bool], seed: int) -> EvalResult:
    """An eval file of ``commit`` as ``evaluate`` writes it: the bootstrap drawn with ``seed``."""
    evals = [_trajectory(f"t{i}", ok, commit, seed=seed) for i, ok in enumerate(passes)]
    append_jsonl(run / "evals" / "trajectories.jsonl", evals)
    records = [record_of(t, "test") for t in evals]
    summary = summarise(records, suite="gsm8k", split="test", skill="s", skill_commit=commit,
                        model="fake/m", seed=seed, delivery="system", limit=None)  # fmt: skip
    result = EvalResult(summary=summary, records=records)
    store(result, run / "evals" / commit / "test.jsonl")
    return result


def test_the_index_and_app_draw_a_runs_cis_with_its_seed(tmp_path):
    """A run of seed 3 (8 tasks, S0 passed 3): its eval file, summary.json and `compare` drew
    the bootstrap with seed 3 ([0%, 75%]); the index's queries and the app drew it with 0
    ([12.5%, 75%]), so a paper table's CIs depended on where they were read."""
    from toolkit.app import data
    from toolkit.evaluate import pair_results
    from toolkit.queries import condition_rates

    runs = tmp_path / "runs"
    s0_passes = [True] * 3 + [False] * 5
    star_passes = [True] * 5 + [False] + [True] + [False]
    run = _write_run(runs, "seeded", [_trajectory("t9", True, A, seed=3)])
    s0 = _seeded_eval(run, A, s0_passes, seed=3)
    star = _seeded_eval(run, B, star_passes, seed=3)
    assert (s0.summary.pass_rate.ci.low, s0.summary.pass_rate.ci.high) == (0.0, 0.75)
    assert pass_rate(s0_passes, seed=0).ci.low == 0.125  # what the app showed
    build_index(runs)
    with connect(runs) as con:
        by_commit = {r.skill_commit: r for r in pass_rate_by_skill(con, origin="eval")}
        assert by_commit[A].ci_low == s0.summary.pass_rate.ci.low
        assert by_commit[B].ci_high == star.summary.pass_rate.ci.high
        conditions = {c.skill_commit: c for c in condition_rates(con, origin="eval")}
        assert (conditions[A].ci_low, conditions[A].ci_high) == (0.0, 0.75)
        table = data.runs_table(con, runs).set_index("run")
        assert table.loc["seeded", "S0"] == "37.5% [0.0%, 75.0%] n=8"
        ours, _ = data.condition_comparison(con, conditions[A], conditions[B])
    assert ours.paired.ci == pair_results(s0, star).paired.ci  # as `trace2skill compare`


# ---------------------------------------------------------------------------------------------
# The runs table's settings columns
# ---------------------------------------------------------------------------------------------

SETTINGS = (
    "kind, suite, model, author_model, protocol, delivery, seed, skill_name, analysts, "
    "error_analyst, merge_batch, max_levels, merge_strategy, consolidation, seq_batch, "
    "s0_drafted, memory_baseline, evolve_limit, test_limit"
)
ROOT = Path(__file__).resolve().parents[1]


def _settings(runs) -> dict[str, dict]:
    with connect(runs) as con:
        frame = con.execute(f"SELECT run_id, {SETTINGS} FROM runs").df()
    frame = frame.astype(object).where(frame.notna(), None)
    return {row.pop("run_id"): row for row in frame.to_dict(orient="records")}


def test_runs_hold_the_settings_of_a_fake_model_evolve_and_an_evaluation(tmp_path):
    """An analyst comparing runs by their settings dug them out of the stages JSON."""
    from tests.repo_helpers import wikitq_repo
    from tests.test_evaluate import _gsm8k_tasks, _scripted_agent
    from tests.test_evolve import config_for, llm, method
    from toolkit.evaluate import evaluate
    from toolkit.evolve import evolve
    from toolkit.llm import LLMConfig, fake_model
    from toolkit.tasks import VENDORED_DATA_DIR

    repo = wikitq_repo(tmp_path / "repo")
    runs = tmp_path / "runs"  # config_for's runs_dir
    with method("index-settings") as agent:
        config = config_for(
            repo, "evolved", model=agent, merge_strategy="git", merge_batch=3, max_levels=2
        )
        evolve(config, llm_config=llm(tmp_path), progress=False)
    ids = [t.id for t in _gsm8k_tasks()]
    with fake_model(_scripted_agent(set(ids[::2]), set(ids))) as model:
        llm_config = LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache")
        for skill in ("none", "skills/gsm8k-math"):
            evaluate(
                skill, "gsm8k", "test", model, run_dir=runs / "evaluated", limit=2,
                data_dir=VENDORED_DATA_DIR, llm_config=llm_config, concurrency=1, resamples=50,
            )  # fmt: skip
    report = build_index(runs)
    assert sorted(report.read) == ["evaluated", "evolved"]
    got = _settings(runs)
    assert got["evolved"] == {
        "kind": "evolve",
        "suite": "wikitq",
        "model": agent,
        "author_model": agent,  # not given: the agent's model is the author
        "protocol": "json",
        "delivery": "system",
        "seed": 0,
        "skill_name": "wikitq-table-qa",
        "analysts": "error",
        "error_analyst": "agentic",
        "merge_batch": 3,
        "max_levels": 2,
        "merge_strategy": "git",
        "consolidation": "parallel",
        "seq_batch": None,  # the sequential baseline's Seq-B: not this run's
        "s0_drafted": False,
        "memory_baseline": False,
        "evolve_limit": 6,
        "test_limit": 4,
    }
    # Two evaluations, the no-skill baseline and a skill: the deliveries they ran are listed.
    assert got["evaluated"] == {
        "kind": "eval",
        "suite": "gsm8k",
        "model": model,
        "author_model": None,
        "protocol": "code",
        "delivery": "none, system",
        "seed": 0,
        "skill_name": "gsm8k-math",
        "analysts": None,
        "error_analyst": None,
        "merge_batch": None,
        "max_levels": None,
        "merge_strategy": None,
        "consolidation": None,
        "seq_batch": None,
        "s0_drafted": None,
        "memory_baseline": None,
        "evolve_limit": None,
        "test_limit": 2,
    }
    # The README's query: runs compared by a setting, no JSON to dig into.
    with connect(runs) as con:
        rows = run_query(con, "SELECT run_id, analysts FROM runs WHERE kind = 'evolve'")
    assert rows.values.tolist() == [["evolved", "error"]]


def test_runs_hold_the_settings_the_committed_manifests_record(tmp_path):
    """The example evolve run and the protocol measurements (real runs of the 1.5B model)."""
    runs = tmp_path / "runs"
    for folder in [
        ROOT / "runs" / "example-wikitq",
        *sorted((ROOT / "benchmarks" / "results" / "protocols").iterdir()),
    ]:
        (runs / folder.name).mkdir(parents=True)
        shutil.copy(folder / "manifest.json", runs / folder.name / "manifest.json")
    build_index(runs)
    got = _settings(runs)
    model = "local/qwen2.5-coder-1.5b"
    assert got["example-wikitq"] == {
        "kind": "evolve",
        "suite": "wikitq",
        "model": model,
        "author_model": model,
        "protocol": "code",
        "delivery": "system",
        "seed": 0,
        "skill_name": "wikitq-table-qa",
        "analysts": "error",
        "error_analyst": "single",
        "merge_batch": 5,
        "max_levels": 5,
        "merge_strategy": "llm",
        "consolidation": "parallel",  # recorded before the setting existed
        "seq_batch": None,
        "s0_drafted": False,  # so were these
        "memory_baseline": False,
        "evolve_limit": 8,
        "test_limit": 10,
    }
    expected = {
        "gsm8k-code-none": ("eval", "gsm8k", "code", "none", None, 100),
        "gsm8k-plain-none": ("eval", "gsm8k", "plain", "none", None, 100),
        "wikitq-code-none": ("eval", "wikitq", "code", "none", None, 100),
        "wikitq-code-s0": ("eval", "wikitq", "code", "system", "wikitq-table-qa", 100),
        "wikitq-plain-none": ("eval", "wikitq", "plain", "none", None, 100),
    }
    columns = ("kind", "suite", "protocol", "delivery", "skill_name", "test_limit")
    assert {run: tuple(got[run][c] for c in columns) for run in expected} == expected
    evaluations = {
        (s["model"], s["seed"], s["author_model"], s["analysts"], s["merge_strategy"])
        for run, s in got.items()
        if run in expected
    }
    assert evaluations == {(model, 0, None, None, None)}


def _manifest_run(runs: Path, run_id: str, stages: dict[str, dict]) -> None:
    from toolkit.runs import StageRecord

    at = "2026-12-05T00:00:00+00:00"
    manifest = Manifest(
        run_id=run_id,
        created_at=at,
        toolkit_version="0",
        stages={
            name: StageRecord(status="done", started_at=at, config=config)
            for name, config in stages.items()
        },
    )
    (runs / run_id).mkdir(parents=True, exist_ok=True)
    (runs / run_id / "manifest.json").write_text(manifest.model_dump_json())


def test_runs_settings_of_stage_by_stage_runs_imports_and_odd_manifests(tmp_path):
    runs = tmp_path / "runs"
    agent = {"suite": "gsm8k", "model": "m", "delivery": "system", "skill_name": "s"}
    # rollout, analyse and consolidate one by one: the settings come from each stage.
    _manifest_run(
        runs,
        "by-hand",
        {
            "rollout": {**agent, "split": "train", "limit": 8, "seeds": {"run": 2},
                        "agent": {"protocol": "tools"}},
            "analyse": {"analyst": "error-single", "model": "author"},
            "consolidate": {"merge_batch": 4, "max_levels": 3, "strategy": "git",
                            "author_model": "author"},
        },
    )  # fmt: skip
    _manifest_run(runs, "imported", {"import": {"suite": "wikitq", "format": "openai"}})
    # Seeds and limits the stages disagree on; a hand-edited manifest's values of the wrong
    # type (or out of range) are NULL and do not stop the build.
    _manifest_run(
        runs,
        "odd",
        {
            "eval:test:a": {**agent, "split": "test", "limit": 10, "seeds": {"run": 0}},
            "eval:test:b": {**agent, "split": "test", "limit": None, "seeds": {"run": 1}},
            "evolve": {"analysts": "success", "error_analyst": "agentic", "merge_batch": "5",
                       "max_levels": 2**40, "seed": True, "model": None},
        },
    )  # fmt: skip
    _manifest_run(runs, "empty", {})
    # The sequential baseline: Seq-B is its setting, the parallel tree's B and L_max are not.
    sequential = {"consolidation": "sequential", "seq_batch": 1, "merge_batch": 5}
    _manifest_run(runs, "seq", {"evolve": {**sequential, "max_levels": 5, "model": "m"}})
    report = build_index(runs)
    assert report.problems == [] and len(report.read) == 5
    seq = _settings(runs)["seq"]
    assert seq["consolidation"] == "sequential"
    assert (seq["seq_batch"], seq["merge_batch"], seq["max_levels"]) == (1, None, None)
    got = _settings(runs)
    assert got["by-hand"] == {
        "kind": "rollout",
        "suite": "gsm8k",
        "model": "m",
        "author_model": "author",
        "protocol": "tools",
        "delivery": "system",
        "seed": 2,
        "skill_name": "s",
        "analysts": "error",
        "error_analyst": "single",
        "merge_batch": 4,
        "max_levels": 3,
        "merge_strategy": "git",
        "consolidation": "parallel",
        "seq_batch": None,
        "s0_drafted": None,
        "memory_baseline": None,
        "evolve_limit": None,
        "test_limit": None,  # its rollout is on train; it evaluated nothing
    }
    assert got["imported"]["kind"] == "import" and got["imported"]["suite"] == "wikitq"
    assert got["imported"]["model"] is None
    odd = got["odd"]
    assert odd["kind"] == "evolve"  # an evolve stage makes the run an evolution
    assert (odd["seed"], odd["test_limit"], odd["merge_batch"], odd["max_levels"]) == ((None,) * 4)
    assert odd["model"] == odd["author_model"] == "m"  # the model its stages ran
    assert (odd["analysts"], odd["error_analyst"]) == ("success", None)  # no error analyst
    assert set(got["empty"].values()) == {None}


def test_every_analyst_choice_is_a_runs_setting():
    from typing import get_args

    from toolkit.analysts.records import AnalystChoice
    from toolkit.index import ANALYST_SETTINGS

    assert set(ANALYST_SETTINGS) == set(get_args(AnalystChoice))


def test_an_index_of_an_older_version_is_rebuilt_with_the_new_columns(runs):
    """Version 6 had no s0_drafted column: its Parquet is rebuilt from the run files."""
    import duckdb

    from toolkit.index import INDEX_SCHEMA_VERSION

    (runs / "r1" / "manifest.json").unlink()
    _manifest_run(runs, "r1", {"eval:test:x": {"suite": "gsm8k", "split": "test", "limit": 3}})
    build_index(runs)
    state = runs / INDEX_DIR / "state.json"
    data = json.loads(state.read_text())
    data["schema_version"] = 6
    state.write_text(json.dumps(data))
    for run in ("r1", "r2"):  # the runs table as version 6 wrote it
        path = runs / INDEX_DIR / run / "runs.parquet"
        with duckdb.connect() as con:
            con.execute(
                f"COPY (SELECT * EXCLUDE (s0_drafted, memory_baseline) FROM '{path}') "
                f"TO '{path}.old' (FORMAT parquet)"
            )
        os.replace(f"{path}.old", path)
    with pytest.raises(RunIndexError, match="s0_drafted"), connect(runs) as con:
        run_query(con, "SELECT s0_drafted FROM runs")
    assert sorted(build_index(runs).read) == ["r1", "r2"]
    assert json.loads(state.read_text())["schema_version"] == INDEX_SCHEMA_VERSION == 7
    assert _rows(
        runs, "SELECT run_id, kind, suite, test_limit, s0_drafted FROM runs ORDER BY 1"
    ) == [
        ("r1", "eval", "gsm8k", 3, None),
        ("r2", None, None, None, None),  # a manifest with no stages has no settings
    ]
    assert build_index(runs).read == []  # rebuilt once, then incremental again
