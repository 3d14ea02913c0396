"""A model call whose cost nobody knows is unknown (None / NULL), never $0.

Found in review: a custom OpenAI-compatible server (``openai/my-model`` at an ``--api-base``),
a hosted model missing from litellm's price list, or a provider that sent no usage had every
call, trajectory and summary store ``cost_usd`` 0.0 as if measured, and every cost total (the
CLI summaries, evolve's, the PR body, report.md, the app, the index) read $0.0000. These runs
go through a real OpenAI-compatible HTTP server on localhost (``tests/openai_server.py``) that
answers as such a server does; the free providers (``local/``, ``fake/``) and replies from the
response cache stay a real 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from tests.openai_server import ServerState, ok, serve, silent
from tests.run_fixture import build_run
from toolkit import queries
from toolkit.app import data
from toolkit.attribution.report import _cost_lines
from toolkit.cli import main
from toolkit.cli.evolve import summary_lines
from toolkit.cost import CostTally, describe_cost
from toolkit.errors import LLMError
from toolkit.evolve import Budget, EvolveSummary, Meter, Score, StageStats
from toolkit.index import build_index, connect, read_run
from toolkit.llm import LLMConfig, fake_model, read_calls
from toolkit.llm.calls import LLMCallRecord, summarize_calls
from toolkit.llm.gateway import Gateway
from toolkit.llm.usage import reply_cost
from toolkit.repo import SkillRepo
from toolkit.review import check_gate, load_review, render_body
from toolkit.trajectory import Trajectory, append_jsonl, import_trajectories, read_trajectories

PRICED = "gpt-4o-mini"  # in litellm's bundled price list: $0.15 / $0.60 per million tokens
PRICE = (3 * 0.15 + 1 * 0.60) / 1e6  # a reply of 3 prompt and 1 completion tokens


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServerState, str]]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TRACE2SKILL_API_KEY", raising=False)
    with serve() as served:
        yield served


def _config(model: str, url: str, tmp_path: Path, cache: bool = False) -> LLMConfig:
    return LLMConfig(
        model=model, api_base=url, cache=cache, cache_dir=tmp_path / "cache", max_retries=0,
        timeout=20,
    )  # fmt: skip


def _usage(prompt: Any, completion: Any) -> SimpleNamespace:
    return SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens=prompt, completion_tokens=completion)
    )


def test_the_cost_rule() -> None:
    def unmapped(response: Any) -> float:
        raise ValueError("This model isn't mapped yet")

    counted = _usage(3, 1)
    assert reply_cost("openai/gpt-4o-mini", counted, lambda r: 0.002) == 0.002
    assert reply_cost("openai/mine", counted, unmapped) is None  # not in the price list
    # No usage: litellm prices its stand-in zeros at $0, which was never measured.
    assert reply_cost("openai/gpt-4o-mini", _usage(0, 0), lambda r: 0.0) is None
    assert reply_cost("openai/gpt-4o-mini", SimpleNamespace(usage=None), lambda r: 0.0) is None
    assert reply_cost("openai/free-tier", counted, lambda r: 0.0) == 0.0  # a real $0 price
    assert reply_cost("openai/x", counted, lambda r: math.nan) is None
    # The embedded and the scripted models are free, usage or not.
    for model in ("local/qwen2.5-coder-1.5b", "fake/echo"):
        assert reply_cost(model, SimpleNamespace(usage=None), unmapped) == 0.0


def test_sums_leave_the_unpriced_out_and_say_so() -> None:
    tally = CostTally.of([0.25, None, 0.5, None])
    assert (tally.cost_usd, tally.priced, tally.unpriced) == (0.75, 2, 2)
    assert tally.describe("calls") == "$0.7500 (2 of 4 calls unpriced)"
    assert CostTally.of([None] * 3).describe("calls") == "unknown (3 of 3 calls unpriced)"
    assert CostTally.of([]).describe("calls") == "$0.0000"
    assert CostTally.of([0.0, 0.0]).describe("calls") == "$0.0000"  # free: a real 0
    assert CostTally.from_sum(0.0, 5, 5).total is None
    assert describe_cost(0.1, 0, 4, "trajectories") == "$0.1000"


def test_the_gateway_records_an_unknown_cost_as_null(server, tmp_path: Path) -> None:
    state, url = server
    log = tmp_path / "llm_calls.jsonl"
    # A custom model name at a server: litellm has no price for it (it was $0).
    mine = Gateway(_config("openai/mine", url, tmp_path), calls_log=log)
    state.replies = [(200, ok("a"))]
    assert mine.complete_full("hi").cost_usd is None
    mine.close()
    # A model in the price list is priced; the same model without usage is not (litellm
    # priced its zeros at $0).
    known = Gateway(_config(f"openai/{PRICED}", url, tmp_path, cache=True), calls_log=log)
    state.replies = [(200, ok("b", model=PRICED)), (200, silent("c", model=PRICED))]
    assert known.complete_full("priced").cost_usd == pytest.approx(PRICE)
    assert known.complete_full("silent").cost_usd is None
    # A reply from the response cache made no request: a real $0, even for that call.
    replay = known.complete_full("silent")
    assert replay.cache_hit and replay.cost_usd == 0.0

    # A failed call still cost its requests: the error carries what they cost.
    class Answer(BaseModel):
        value: int

    state.replies = [(200, ok("no json", model=PRICED))] * 2
    with pytest.raises(LLMError) as failed:
        known.complete_full("structured", response_model=Answer)
    assert failed.value.cost_usd == pytest.approx(2 * PRICE)
    known.close()

    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["cost_usd"] for x in lines[:4]] == [None, pytest.approx(PRICE), None, 0.0]
    assert all(x["schema_version"] == 2 for x in lines)
    summary = summarize_calls(read_calls(log))
    assert (summary.cost_usd, summary.cost_unpriced) == (pytest.approx(3 * PRICE), 2)
    out = CliRunner().invoke(main, ["llm", "calls", str(log)])
    assert "$0.0000 (2 of 5 calls unpriced)" in out.output, out.output


def _submit(request: dict) -> tuple:
    """A json-protocol agent at the server: answers 3 times the number in the question."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    number = int(user.split("What is ")[1].split(" ")[0])
    action = {"thought": "", "cited_sections": [], "tool": "submit",
              "args": {"answer": str(3 * number)}}  # fmt: skip
    return 200, ok(json.dumps(action))


def _tasks(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "mine.jsonl"
    rows = [{"id": f"q{i}", "question": f"What is {i} times 3?", "answer": 3 * i} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rollout(runner: CliRunner, tasks: Path, run_dir: Path, *model: str) -> str:
    args = ["rollout", "--suite", "jsonl", "--data", str(tasks), "--split", "all",
            "--scoring", "numeric", "--protocol", "json", "--no-cache", "--no-progress",
            "--run-dir", str(run_dir), "--model", *model]  # fmt: skip
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    return out.output


def test_an_unpriced_model_s_run_reads_unknown_everywhere(server, tmp_path: Path) -> None:
    state, url = server
    state.default = _submit
    runs, tasks, runner = tmp_path / "runs", _tasks(tmp_path), CliRunner()
    shown = _rollout(runner, tasks, runs / "mine", "openai/mine", "--api-base", url)
    assert "unknown (3 of 3 trajectories unpriced)" in shown
    assert "$0.0000" not in shown
    # A fake model reporting no usage is still free: its cost is a real 0, its tokens unknown.
    with fake_model(lambda m: json.loads(_submit({"messages": m})[1]["choices"][0]["message"]
                                         ["content"]), usage=False) as free:  # fmt: skip
        free_shown = _rollout(runner, tasks, runs / "free", free)
    assert "cost          $0.0000\n" in free_shown

    # Stored as unknown: the trajectories and the calls log.
    (trajectories,) = [read_trajectories(runs / "mine").records]
    assert [t.cost_usd for t in trajectories] == [None] * 3
    assert all(t.passed for t in trajectories)
    raw = (runs / "mine" / "trajectories.jsonl").read_text().splitlines()[0]
    assert '"cost_usd":null' in raw and '"schema_version":2' in raw
    assert {c.cost_usd for c in read_calls(runs / "mine")} == {None}
    assert {t.cost_usd for t in read_trajectories(runs / "free").records} == {0.0}

    # The index: NULL, by the bulk path and the line-by-line one alike.
    report = build_index(runs)
    assert sorted(report.read) == ["free", "mine"] and not report.problems
    con = connect(runs)
    for table in ("trajectories", "llm_calls"):
        assert con.execute(
            f"SELECT run_id, count(*) FILTER (WHERE cost_usd IS NULL), "
            f"count(*) FILTER (WHERE cost_usd = 0) FROM {table} GROUP BY 1 ORDER BY 1"
        ).fetchall() == [("free", 0, 3), ("mine", 3, 0)], table
    rows, _, _ = read_run(runs / "mine")
    assert {r["cost_usd"] for r in rows["trajectories"]} == {None}
    assert {r["cost_usd"] for r in rows["llm_calls"]} == {None}
    by_model = {c.model: c for c in queries.cost_by_model(con)}
    assert (by_model["openai/mine"].cost_usd, by_model["openai/mine"].cost_unpriced) == (0.0, 3)
    assert by_model[free].cost_unpriced == 0
    stages = {(s.stage, s.model): s for s in queries.cost_by_stage(con)}
    assert stages[("rollout", "openai/mine")].cost_unpriced == 3
    assert stages[("rollout", free)].cost_unpriced == 0

    # The app says unknown where it showed $0.
    table = data.runs_table(con, runs).set_index("run")
    assert table.loc["mine", "cost"] == "unknown (3 of 3 calls unpriced)"
    assert table.loc["free", "cost"] == "$0.0000"
    models = data.cost_by_model(con)
    assert data.total_cost_text(models) == "$0.0000 (3 of 6 calls unpriced)"
    shown_models = data.model_cost_table(models).set_index("model")
    assert shown_models.loc["openai/mine", "cost"] == "unknown (3 of 3 calls unpriced)"
    assert "cost_usd" not in shown_models.columns
    con.close()
    with data.open_index(runs, ["mine"]) as mine_only:
        stage = data.cost_by_stage(mine_only, runs, ["mine"]).set_index("stage")
    assert stage.loc["rollout", "cost"] == "unknown (3 of 3 trajectories unpriced)"
    # report.md's cost line.
    (line,) = _cost_lines(runs / "mine")
    assert "unknown (3 of 3 calls unpriced: litellm has no price for the model" in line


def test_the_pr_body_and_evolve_summary_name_the_unpriced_calls(tmp_path: Path) -> None:
    root, run_dir = build_run(tmp_path)
    append_jsonl(run_dir / "llm_calls.jsonl", [
        LLMCallRecord(call_id=f"m{k}", model="openai/mine", tokens_in=3, tokens_out=1,
                      cost_usd=None, latency_s=0.5, started_at=0.0, ended_at=0.5)
        for k in range(2)
    ])  # fmt: skip
    review = load_review(run_dir, SkillRepo.open(root).git)
    body = render_body(review, check_gate(review))
    assert "| `openai/mine` | 2 | 0 | 6 | 2 | unknown (2 of 2 calls unpriced) |" in body
    assert "| `fake/m` | 4 | 1 | 400 | 40 | $0.0040 |" in body
    assert "2 model call(s) have no known cost" in body

    score = Score(n=2, passed=1, rate=0.5, ci_low=0.0, ci_high=1.0)
    summary = EvolveSummary(
        run_id="r", suite="jsonl", model="openai/mine", author_model="openai/mine",
        skill="skills/x", base_commit="0" * 40, result_commit=None, result_branch="t2s/r/result",
        evolve=score, analyses={}, dropped_reasons={}, merges={}, final_patch_id=None,
        top_edits=[], s0=score, result=score, difference=None, ci_low=None, ci_high=None,
        p_value=None, mde=None, gained=[], lost=[],
        stages={
            "rollout": StageStats(status="done", calls=4, cost_usd=0.0, cost_unpriced=4),
            "analyse": StageStats(status="done", calls=2, cost_usd=0.5, cost_unpriced=0),
        },
    )  # fmt: skip
    lines = summary_lines(summary, tmp_path)
    assert any(
        line.startswith("cost: $0.5000 (4 of 6 calls unpriced: litellm has no price")
        for line in lines
    ), lines
    summary.stages["rollout"].cost_unpriced = 0
    assert "cost: $0.5000" in summary_lines(summary, tmp_path)


def test_the_meter_counts_unpriced_calls_apart(tmp_path: Path) -> None:
    log = tmp_path / "llm_calls.jsonl"
    log.touch()
    meter = Meter(log, Budget())  # counts what is appended after its start
    lines = [
        {"schema_version": 2, "tokens_in": 3, "tokens_out": 1, "cost_usd": 0.25},
        {"schema_version": 2, "tokens_in": 3, "tokens_out": 1, "cost_usd": None},
        {"schema_version": 1, "tokens_in": 3, "tokens_out": 1},  # old: an absent cost was 0
        {"schema_version": 2, "cache_hit": True, "cost_usd": 0.0},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    spent = meter.read()
    assert (spent.calls, spent.cached, spent.cost_usd, spent.unpriced) == (3, 1, 0.25, 1)


def test_old_files_read_as_they_did(tmp_path: Path) -> None:
    """Version 1 records had no unknown cost: an absent one was 0, and stays 0."""
    call = {"schema_version": 1, "call_id": "old", "model": "m", "latency_s": 1.0,
            "started_at": 0.0, "ended_at": 1.0}  # fmt: skip
    assert LLMCallRecord.model_validate(call).cost_usd == 0.0
    line = json.loads(
        (Path(__file__).parents[1] / "runs" / "example-wikitq" / "trajectories.jsonl")
        .read_text()
        .splitlines()[0]
    )
    assert line["schema_version"] == 1
    bare = {k: v for k, v in line.items() if k != "cost_usd"}
    assert Trajectory.model_validate(bare).cost_usd == 0.0
    # The index's bulk path: an old line's absent cost is 0, a null one since version 2 NULL.
    from toolkit.index_bulk import call_insert, load

    path = tmp_path / "llm_calls.jsonl"
    path.write_text(
        json.dumps({**call, "schema_version": 2, "cost_usd": None}) + "\n"
        + json.dumps({**call, "call_id": "older"}) + "\n"
    )  # fmt: skip
    con = duckdb.connect()
    assert load(con, "src_calls", path, "llm_calls") == 2
    rows = con.execute(
        f"SELECT call_id, cost_usd FROM ({call_insert('src_calls', 'r')}) ORDER BY 1"
    ).fetchall()
    assert rows == [("old", None), ("older", 0.0)]


def test_an_import_without_a_cost_is_unknown_and_keeps_its_id(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    base = {"task_id": "t1", "messages": chat, "outcome": {"passed": True}}
    ids = {}
    for name, extra in (("absent", {}), ("null", {"cost_usd": None}), ("zero", {"cost_usd": 0}),
                        ("priced", {"cost_usd": 0.5})):  # fmt: skip
        source = tmp_path / f"{name}.jsonl"
        source.write_text(json.dumps({**base, **extra}) + "\n")
        import_trajectories(source, tmp_path / name)
        (traj,) = read_trajectories(tmp_path / name).records
        ids[name] = (traj.id, traj.cost_usd)
    assert ids["absent"][1] is None and ids["null"][1] is None
    assert ids["zero"][1] == 0.0 and ids["priced"][1] == 0.5
    # An absent cost was hashed as 0: an old import file imported again adds nothing.
    assert ids["absent"][0] == ids["null"][0] == ids["zero"][0] != ids["priced"][0]
