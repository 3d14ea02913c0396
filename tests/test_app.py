"""The analytics app: every page on a realistic run folder and on an empty one (AppTest)."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from streamlit import config
from streamlit.testing.v1 import AppTest

from tests.app_fixtures import BASELINE, RUN, make_runs
from toolkit.app import data, ui
from toolkit.app.main import PAGES
from toolkit.cli import main
from toolkit.cli.app import streamlit_command

APP = Path(__file__).resolve().parent.parent / "app.py"
VIEWS = Path(__file__).resolve().parent.parent / "toolkit" / "app" / "views"
PAGE_NAMES = [script.removesuffix(".py") for script, *_ in PAGES]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = make_runs(tmp_path_factory.mktemp("app"))
    data.refresh_index(runs)
    return runs


def open_page(runs_dir: Path, page: str, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    """Open ``page`` fresh, as a browser opening its URL with the query ``params`` would."""
    monkeypatch.setenv("TRACE2SKILL_RUNS_DIR", str(runs_dir))
    # As `trace2skill app` serves it (cli.app.streamlit_command): no magic, whose ast.parse
    # in the script thread hit CPython 3.11.7's gh-106905 in a CI run.
    config.set_option("runner.magicEnabled", False)
    at = AppTest.from_file(str(VIEWS / f"{page}.py"), default_timeout=60)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def infos(at: AppTest) -> str:
    return "\n".join(i.value for i in at.info)


def test_runs_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "runs", monkeypatch)
    assert at.title[0].value == "Runs"
    table = at.dataframe[0].value
    assert list(table["run"]) == [RUN, BASELINE]  # newest first
    demo = table.iloc[0]
    # S0 passes 3 of 6 eval tasks, S* 5 of 6, with their bootstrap CIs.
    assert demo["S0"].startswith("50.0% [") and demo["S0"].endswith("n=6")
    assert demo["S*"].startswith("83.3% [")
    assert demo["delta"] == pytest.approx(1 / 3)
    assert demo["status"] == "done"  # every stage done (unfinished ones are named)
    assert demo["kind"] == "rollout"  # its first stage: it has no evolve stage
    assert demo["wall_s"] == 150.0
    rates = at.dataframe[1].value
    assert list(rates["version"].str[:2]) == ["S0", "S*"]
    assert list(rates["n"]) == [6, 6]
    # S* fixed t3, t4, t6 and broke t2; each flip links to its two trajectories.
    assert metrics(at)["Fixed (failed under A, passed under B)"] == "3"
    assert metrics(at)["Broken (passed under A, failed under B)"] == "1"
    flips = at.dataframe[2].value
    assert list(flips["task"]) == ["t2", "t3", "t4", "t6"]
    # Each link selects the trajectory's run too (a bare id opened in the newest run).
    assert all(
        link.startswith(f"trajectories?runs={RUN}&traj={RUN}%2F") for link in flips["trajectory_b"]
    )
    # Filters change the figures and land in the URL.
    at.radio(key="w_origin").set_value("all").run()
    # S0's rollouts count too, as their own row: pooled with the evaluations (n=12) they
    # counted the fixture's tasks twice (a real run's rollouts are other tasks: its train).
    shown = at.dataframe[1].value
    assert list(zip(shown["version"].str[:2], shown["n"], strict=True)) == [
        ("S0", 6), ("S0", 6), ("S*", 6)
    ]  # fmt: skip
    assert sorted(shown["where"][shown["version"].str.startswith("S0")].str.split().str[1]) == [
        "eval/test", "rollout/test"
    ]  # fmt: skip
    at.multiselect(key="w_runs").set_value([RUN, BASELINE]).run()
    versions = list(at.dataframe[1].value["version"])
    assert versions[0] == "no skill"  # then S0, S*, the variants
    # With several runs selected, S0 and S* name their run (the last run's labels won).
    assert {v.split()[0] for v in versions if v.endswith(f"({RUN})")} == {"S0", "S*"}
    assert at.query_params["runs"] == f"{RUN},{BASELINE}"
    assert at.query_params["origin"] == "all"


def test_runs_filters_from_the_url(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "runs", monkeypatch, runs=BASELINE)
    assert at.multiselect(key="w_runs").value == [BASELINE]
    assert "Only one skill version" in infos(at)


def test_skill_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "skill", monkeypatch)
    assert metrics(at) == {"Lines": "14", "Written by patches": "1", "Written by merges": "1"}
    assert "Keep track of units; convert before adding." in at.code[1].value  # S*
    assert "Keep track of units." in at.code[0].value  # S0
    at.toggle(key="w_written").set_value(True).run()
    lines = at.dataframe[0].value
    assert list(lines["line"]) == [11, 14]
    assert list(lines["kind"]) == ["patch", "merge"]
    at.selectbox(key="w_line").set_value(14).run()
    text = "\n".join(m.value for m in at.markdown)
    assert "written by a **merge** commit" in text and "support **3**" in text
    assert text.count(f"trajectories?runs={RUN}&traj=") == 3  # the three failed tasks
    assert at.query_params["line"] == "14"


def test_tree_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "tree", monkeypatch)
    assert metrics(at) == {
        "Leaf patches": "3",
        "Merges": "3",
        "Conflict hunks": "1",
        "Failed or passed up": "1",
    }
    merges = at.dataframe[0].value
    assert list(merges["status"]) == ["union", "passed_up", "merged"]
    at.selectbox(key="w_merge").set_value("L2/g0001").run()
    text = "\n".join(m.value for m in at.markdown)
    assert "`SKILL.md` (1 hunks)" in text
    dropped = at.dataframe[-1].value
    assert list(dropped["edit_id"]) == ["u9"]


def test_attribution_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "attribution", monkeypatch)
    assert metrics(at) == {
        "Edits measured": "2",
        "Help (CI above 0)": "1",
        "Hurt (CI below 0)": "0",
    }
    effects = at.dataframe[0].value
    # Sorted by effect; m1's ablation lost 0.33, so m1's effect is +0.33.
    assert list(effects["edit_id"]) == ["m2", "m1"]
    assert list(effects["effect"]) == pytest.approx([-0.17, 0.33])
    # The edits' axis is categorical: an all-digit hex id must not make it numeric.
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["yaxis"]["type"] == "category"
    at.radio(key="w_kind").set_value("only").run()
    assert metrics(at)["Edits measured"] == "1"
    assert at.query_params["kind"] == "only"


def test_usage_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "usage", monkeypatch)
    # S* by default: its "demo" and "demo/rounding" sections were never used.
    candidates = at.dataframe[0].value
    assert list(candidates["ref"]) == ["SKILL.md#demo", "SKILL.md#demo/rounding"]
    at.slider(key="w_maxshare").set_value(0.5).run()
    candidates = at.dataframe[0].value
    assert "SKILL.md#demo/parse-numbers" in list(candidates["ref"])
    assert metrics(at)["Sections used by at most that share"] == "3"


def test_trajectories_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "trajectories", monkeypatch)
    assert metrics(at)["Matching trajectories"] == "18"
    at.selectbox(key="w_outcome").set_value("fail").run()
    assert metrics(at)["Matching trajectories"] == "7"
    at.selectbox(key="w_section").set_value("SKILL.md#demo/parse-numbers").run()
    # Odd tasks read "parse-numbers"; of those only t3 fails, under S0 (rollout and eval).
    assert metrics(at)["Matching trajectories"] == "2"
    page = at.dataframe[0].value
    assert list(page["task"]) == ["t3", "t3"] and not page["passed"].any()
    assert at.query_params["section"] == "SKILL.md#demo/parse-numbers"


def test_trajectory_detail(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "trajectories", monkeypatch, outcome="fail", origin="rollout")
    traj = at.selectbox(key="w_traj").value
    assert at.subheader[0].value.endswith("(FAIL)")
    labels = [e.label for e in at.expander]
    assert labels[0].startswith("Step 0: python (sections: ") and "SKILL.md#demo/units" in labels[0]
    assert labels[1] == "Step 1: submit"
    assert at.code[0].value == "print(6 * 7)"
    text = "\n".join(m.value for m in at.markdown)
    assert "**error-agentic** analyst" in text and "**kept**" in text
    assert at.query_params["traj"] == traj
    # An evaluation trajectory is never analysed: no hint to run `analyse` on it.
    ev = open_page(runs, "trajectories", monkeypatch, origin="eval")
    shown = "\n".join(i.value for i in ev.info)
    assert "only the rollouts of the evolve split are analysed" in shown
    assert "trace2skill analyse" not in "\n".join(c.value for c in ev.code)


def test_the_same_trajectory_id_in_two_runs_opens_in_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: an eval run and a compare run of the same tasks share ids,
    and the explorer could open only one of them (its selectbox collapsed the duplicates)."""
    runs = make_runs(tmp_path)
    shutil.copytree(runs / RUN, runs / "demo-copy")
    data.refresh_index(runs)
    both = f"{RUN},demo-copy"
    at = open_page(runs, "trajectories", monkeypatch, runs=both, origin="eval")
    rows = at.dataframe[0].value
    assert len(at.selectbox(key="w_traj").options) == len(rows) == 24
    traj = rows["id"].iloc[0]
    for run in (RUN, "demo-copy"):
        at = open_page(runs, "trajectories", monkeypatch, runs=both, traj=f"{run}/{traj}")
        assert f"run `{run}` (eval)" in at.caption[0].value
    # An older link (a bare id) still opens the trajectory.
    at = open_page(runs, "trajectories", monkeypatch, runs=RUN, traj=traj)
    assert at.subheader[0].value.startswith("Task ")


def test_the_runs_chosen_on_one_page_are_the_next_pages_default(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: every page started again from the newest run."""
    monkeypatch.setenv("TRACE2SKILL_RUNS_DIR", str(runs))
    config.set_option("runner.magicEnabled", False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("toolkit/app/views/runs.py").run()
    at.multiselect(key="w_runs").set_value([BASELINE, RUN]).run()
    at.switch_page("toolkit/app/views/usage.py").run()
    assert at.multiselect(key="w_runs").value == [BASELINE, RUN]
    at.switch_page("toolkit/app/views/tree.py").run()
    assert at.selectbox(key="w_run").value == BASELINE  # the first of them
    at.selectbox(key="w_run").set_value(RUN).run()
    at.switch_page("toolkit/app/views/trajectories.py").run()
    assert at.multiselect(key="w_runs").value == [BASELINE, RUN]  # RUN was one of them


def test_cost_page(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs, "cost", monkeypatch)
    assert metrics(at) == {
        "Model calls": "10",
        "Cache hits": "3",
        "Tokens": "1,200",
        "Cost": "$0.0100",
    }
    stages = at.dataframe[0].value
    assert list(stages["stage"]) == ["rollout", "eval", "analyse", "consolidate"]
    assert list(stages["tokens_in"]) == [6 * 280, 12 * 280, 3 * 500, 3 * 900]
    at.multiselect(key="w_runs").set_value([BASELINE]).run()
    assert "No model calls logged" in infos(at)


@pytest.mark.parametrize("page", ["skill", "tree", "attribution"])
def test_pages_say_what_is_missing(runs: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    at = open_page(runs, page, monkeypatch, run=BASELINE)
    message = infos(at)
    assert BASELINE in message
    # Commands that work on this run: a rollout-only run is analysed first (`consolidate`
    # refused it), and a run with no S* cannot be ablated.
    if page == "tree":
        assert f"has no analyses yet; run `trace2skill analyse {runs / BASELINE}`" in message
    if page == "attribution":
        assert "has no S0 -> S*" in message


def test_missing_stages_point_to_what_produces_them(tmp_path: Path) -> None:
    """Found by a new-user trial: an interrupted evolve was told to run `consolidate`, a run
    whose analyses were all dropped to run `consolidate` (which said to run `analyse`)."""
    runs = make_runs(tmp_path)
    run_dir = runs / RUN
    (run_dir / "merges.jsonl").unlink()
    stages = {"evolve": {"status": "interrupted"}}
    assert "evolve --resume --run-id" in data.next_step(runs, RUN, stages, "consolidation")
    lines = (run_dir / "analyses.jsonl").read_text().splitlines()
    dropped = [
        json.dumps({**json.loads(line), "status": "dropped", "reason": "task-specific"})
        for line in lines
    ]
    (run_dir / "analyses.jsonl").write_text("\n".join(dropped) + "\n")
    message = data.next_step(runs, RUN, {}, "consolidation")
    assert f"None of run `{RUN}`'s {len(lines)} analyses was kept (task-specific" in message
    (run_dir / "analyses.jsonl").unlink()
    assert f"run `trace2skill analyse {run_dir}`" in data.next_step(runs, RUN, {}, "consolidation")
    (run_dir / "trajectories.jsonl").unlink()
    message = data.next_step(runs, RUN, {}, "consolidation")
    assert "holds evaluations only: there is nothing to analyse or consolidate" in message
    from toolkit.runs import read_manifest

    manifest = read_manifest(run_dir)
    recorded = {name: {"config": s.config} for name, s in manifest.stages.items()}
    assert f"trace2skill ablate {run_dir}" in data.next_step(runs, RUN, recorded, "attribution")


@pytest.mark.parametrize("folder", ["empty", "example"])
def test_navigation_serves_every_page(
    tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    """app.py's navigation: each page from the menu, on an empty runs folder and on runs."""
    runs_dir = runs
    if folder == "empty":
        runs_dir = tmp_path / "runs"
        runs_dir.mkdir()
    monkeypatch.setenv("TRACE2SKILL_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    for page, (_, title, *_) in zip(PAGE_NAMES, PAGES, strict=True):
        at.switch_page(f"toolkit/app/views/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.title[0].value == title
        if folder == "empty":
            assert "No runs in" in infos(at) and "make demo" in infos(at)
            assert not at.dataframe
        else:
            assert at.dataframe, page


def test_missing_contract_files_and_torn_lines(tmp_path: Path, runs: Path) -> None:
    copy = tmp_path / RUN
    shutil.copytree(runs / RUN, copy)
    (copy / "merges.jsonl").unlink()
    with (copy / "ablations.jsonl").open("a") as f:
        f.write('{"edit_id": "m9", "kind": "abl')  # a torn last line is skipped
    assert data.merge_tree(copy).empty
    assert list(data.attribution(copy)["edit_id"]) == ["m1", "m2", "m1"]
    # Without merges.jsonl, an edit's support falls back to its patch's (3 leaves).
    assert data.attribution(copy)["support"].tolist() == [3, 3, 3]


def test_merge_tree_shape(runs: Path) -> None:
    nodes = data.merge_tree(runs / RUN).set_index("id")
    root = nodes[nodes["parent"] == ""]
    assert list(root.index) == ["L2/g0001"]
    assert nodes.loc["L1/g0001", "parent"] == "L2/g0001"
    # A merge passed up with one child keeps that child's patch id; the leaf stays a leaf.
    assert nodes.loc["L1/g0002", "parent"] == "L2/g0001"
    leaves = nodes[nodes["kind"] == "patch"]
    assert len(leaves) == 3 and set(leaves["parent"]) == {"L1/g0001", "L1/g0002"}


def test_app_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["app", "--help"])
    assert result.exit_code == 0 and "trace2skill app runs/" in result.output
    argv = streamlit_command(8600, "127.0.0.1", browser=False)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert argv[4].endswith("toolkit/app/main.py") and Path(argv[4]).is_file()
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert argv[argv.index("--client.toolbarMode") + 1] == "viewer"  # no deploy button
    # A folder named on the command line must exist (the default runs/ may not, yet).
    missing = CliRunner().invoke(main, ["app", str(tmp_path / "nope"), "--no-browser"])
    assert missing.exit_code == 1 and "is not a folder of runs" in missing.output
    # A port in use is refused before "Serving the app on ..." (it was printed, then failed).
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(main, ["app", str(tmp_path), "--port", str(port), "--no-browser"])
    assert busy.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in busy.output
    assert "Serving" not in busy.output


def test_a_run_made_on_another_machine_shows_its_skill_from_its_bundle(tmp_path):
    """The example run recorded a repository that is not here: the app imports the run's
    refs.bundle into a repository of its own, once, and reads S0 and S* from it."""

    from toolkit.app import data as app_data
    from toolkit.runs import read_manifest

    example = Path(__file__).resolve().parents[1] / "runs" / "example-wikitq"
    runs = tmp_path / "runs"
    shutil.copytree(example, runs / "example-wikitq")
    path = runs / "example-wikitq" / "manifest.json"
    # The recorded repository must be absent (the machine that made the run may be this one).
    path.write_text(
        re.sub(r'"repo": "[^"]*"', '"repo": "/nonexistent/elsewhere"', path.read_text())
    )
    manifest = read_manifest(runs / "example-wikitq")
    stages = {name: {"config": stage.config} for name, stage in manifest.stages.items()}
    skills = app_data.run_skills(runs, "example-wikitq", stages)
    assert skills is not None and skills.base is not None and skills.result is not None
    assert skills.repo_path == runs / ".index" / "bundles" / "example-wikitq"
    assert skills.base_commit != skills.result_commit
    stamp = (skills.repo_path / ".bundle-stamp").stat().st_mtime_ns
    again = app_data.run_skills(runs, "example-wikitq", stages)
    assert again is not None and again.result_commit == skills.result_commit
    assert (skills.repo_path / ".bundle-stamp").stat().st_mtime_ns == stamp  # made once
    # Each line's support is the index's (its edit's leaves), not blame's first writer: the
    # app said support 1 where `support`, the index and the PR said 5.
    from toolkit.runfiles import MergeLine
    from toolkit.skill_lines import read_skill_lines
    from toolkit.trajectory import read_jsonl

    run_dir = runs / "example-wikitq"
    merges = read_jsonl(run_dir / "merges.jsonl", MergeLine).records
    indexed, _, _ = read_skill_lines(run_dir, manifest, merges)
    shown = app_data.skill_lines(skills, run_dir, "SKILL.md")
    expected = {r["line"]: r["support"] for r in indexed if r["file"] == "SKILL.md"}
    got = {int(r.line): None if pd.isna(r.support) else r.support for r in shown.itertuples()}
    assert got == expected and max(v or 0 for v in got.values()) > 1
    # The versions the run evaluated are named, ablation variants too (they were bare ids).
    from toolkit.index import build_index, connect

    build_index(runs)
    with connect(runs) as con:
        labels = set(app_data.version_labels(con, skills).values())
    assert any(x.startswith("S0 ") for x in labels) and any(x.startswith("S* ") for x in labels)
    assert any(x.startswith("ablate/") for x in labels) and any(
        x.startswith("only/") for x in labels
    )


def test_a_renamed_run_folder_finds_its_refs_by_its_manifests_run_id(tmp_path: Path) -> None:
    """Found by a new-user trial: a copy of the example run under another folder name showed
    an ablation variant as S* (its refs are named by the manifest's run id, not the folder)."""
    from toolkit.runs import read_manifest

    example = Path(__file__).resolve().parents[1] / "runs" / "example-wikitq"
    runs = tmp_path / "runs"
    shutil.copytree(example, runs / "downloaded-artifact")
    data.refresh_index(runs)
    manifest = read_manifest(runs / "downloaded-artifact")
    assert manifest is not None and manifest.run_id == "example-wikitq"
    with data.open_index(runs) as con:
        table = data.runs_table(con, runs).set_index("run")
    skills = data.run_skills(
        runs, "downloaded-artifact", {n: {"config": s.config} for n, s in manifest.stages.items()}
    )
    assert skills is not None and skills.result is not None
    summary = json.loads((runs / "downloaded-artifact" / "summary.json").read_text())
    row = table.loc["downloaded-artifact"]
    assert row["S*"].endswith(f"n={summary['result']['n']}")
    assert row["delta"] == pytest.approx(summary["result"]["rate"] - summary["s0"]["rate"])
    # Its settings, from the manifest's evolve config (the author: the agent's model).
    settings = ["kind", "suite", "author", "analysts", "merge"]
    assert row[settings].tolist() == [
        "evolve", "wikitq", "local/qwen2.5-coder-1.5b", "error (single)", "llm, B=5, L_max=5"
    ]  # fmt: skip


def test_runs_table_shows_a_runs_settings_before_its_first_trajectory(tmp_path: Path) -> None:
    """A run that has just started (no trajectory yet) showed no suite, model or protocol."""
    from toolkit.runs import update_stage

    runs = tmp_path / "runs"
    config = {"suite": "gsm8k", "model": "m", "protocol": "plain", "delivery": "system",
              "seed": 3, "analysts": "combined", "error_analyst": "agentic",
              "merge_strategy": "git", "merge_batch": 4, "max_levels": 2}  # fmt: skip
    update_stage(runs / "fresh", "evolve", status="running", config=config)
    data.refresh_index(runs)
    with data.open_index(runs) as con:
        row = data.runs_table(con, runs).set_index("run").loc["fresh"]
    shown = ["kind", "suite", "models", "mode", "protocols", "seeds", "author", "analysts"]
    assert row[shown].tolist() == [
        "evolve", "gsm8k", "m", "system", "plain", "3", "m", "combined (agentic)"
    ]  # fmt: skip
    assert row["merge"] == "git, B=4, L_max=2" and row["trajectories"] == 0


def test_section_shares_count_each_trajectory_once_as_the_usage_command_does(
    tmp_path: Path,
) -> None:
    """Found by a new-user trial: the heatmap showed the largest share of one kind (28%) where
    `trace2skill usage` said 6 of 18 trajectories (33%) used the section."""
    from toolkit.attribution.run import read_run_trajectories
    from toolkit.attribution.usage import section_usage

    example = Path(__file__).resolve().parents[1] / "runs" / "example-wikitq"
    runs = tmp_path / "runs"
    shutil.copytree(example, runs / "example-wikitq")
    data.refresh_index(runs)
    trajectories = read_run_trajectories(runs / "example-wikitq")
    expected = {
        (r.skill_commit, r.ref): r.used / r.trajectories
        for r in section_usage(trajectories, {})
        if r.used
    }
    with data.open_index(runs) as con:
        shares = data.section_shares(con, {})
        kinds = data.usage(con, {})
    got = dict(
        zip(zip(shares["skill_commit"], shares["ref"], strict=True), shares["share"], strict=True)
    )
    assert got == pytest.approx(expected)
    # Some section was used in more than one way, so one kind's share alone was less.
    largest_kind = kinds.groupby(["skill_commit", "ref"])["share"].max()
    assert any(largest_kind[key] < share for key, share in got.items())


def test_an_evaluation_run_fills_s0_first(tmp_path: Path) -> None:
    """Found by a new-user trial: an eval run of one skill showed it as S* beside an empty S0;
    a compare run's two skills are its baseline (S0 column) and its change (S*)."""
    runs = make_runs(tmp_path)
    run = runs / "cmp"
    (run / "evals").mkdir(parents=True)
    shutil.copy(runs / RUN / "evals" / "trajectories.jsonl", run / "evals" / "trajectories.jsonl")
    manifest = json.loads((runs / RUN / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "run_id": "cmp", "stages": {}}))
    data.refresh_index(runs)
    with data.open_index(runs) as con:
        row = data.runs_table(con, runs).set_index("run").loc["cmp"]
        demo = data.runs_table(con, runs).set_index("run").loc[RUN]
    assert {row["S0"], row["S*"]} == {demo["S0"], demo["S*"]}
    assert row["delta"] == pytest.approx(
        float(row["S*"].split("%")[0]) / 100 - float(row["S0"].split("%")[0]) / 100, abs=1e-3
    )


def test_runs_table_rates_one_split_not_a_pool(tmp_path: Path) -> None:
    """Found by a new-user trial: a run evaluated on train and test showed one pooled n."""
    from toolkit.trajectory import append_jsonl, read_trajectories

    runs = make_runs(tmp_path)
    evals = runs / RUN / "evals" / "trajectories.jsonl"
    s0 = read_trajectories(evals).records[0]
    extra = s0.model_copy(update={"id": "train-" + s0.id[:10], "split": "train", "task_id": "x"})
    append_jsonl(evals, extra)
    data.refresh_index(runs)
    with data.open_index(runs) as con:
        table = data.runs_table(con, runs)
    assert table.set_index("run").loc[RUN, "S0"].endswith("n=6")  # the test split's six


def test_runs_table_rates_one_protocol_not_a_pool(tmp_path: Path) -> None:
    """Found on a real compare run folder (one skill, --protocol-a plain --protocol-b code):
    the S0 column pooled both protocols, n=8 for 4 tasks. Another protocol is another agent."""
    from toolkit.trajectory import append_jsonl, read_trajectories

    runs = make_runs(tmp_path)
    evals = runs / RUN / "evals" / "trajectories.jsonl"
    s0_commit = read_trajectories(evals).records[0].skill_commit
    s0 = [t for t in read_trajectories(evals).records if t.skill_commit == s0_commit]
    # The same six tasks again under the plain protocol, later, every one failed.
    plain = [
        t.model_copy(
            update={
                "id": "plain-" + t.id[:10],
                "protocol": "plain",
                "started_at": t.started_at + 100,
                "ended_at": t.ended_at + 100,
                "verdict": t.verdict.model_copy(update={"passed": False, "score": 0.0}),
            }
        )
        for t in s0
    ]
    append_jsonl(evals, plain)
    data.refresh_index(runs)
    with data.open_index(runs) as con:
        row = data.runs_table(con, runs).set_index("run").loc[RUN]
    # The first evaluated of the two (code): 3 of its 6, not 3 of 12.
    assert row["S0"].startswith("50.0% [") and row["S0"].endswith("n=6")
    assert row["protocols"] == f"{s0[0].protocol}, plain"  # and the table says there were two


PROTOCOL_RUNS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "protocols"


@pytest.fixture(scope="module")
def protocol_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed protocol measurements (real 1.5B runs: GSM8K code and plain, WikiTQ code
    with no skill and, unfinished, with S0), indexed in a copy (the index writes .index/)."""
    runs = tmp_path_factory.mktemp("protocols") / "runs"
    shutil.copytree(PROTOCOL_RUNS, runs)
    data.refresh_index(runs)
    return runs


def test_conditions_page_compares_protocols_side_by_side(
    protocol_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/protocols.md's GSM8K table and paired line, read off the page."""
    at = open_page(protocol_runs, "conditions", monkeypatch, suite="gsm8k")
    assert at.title[0].value == "Conditions"
    # Every run by default: the conditions live in one run folder each.
    assert len(at.multiselect(key="w_runs").value) == len(list(PROTOCOL_RUNS.iterdir()))
    table = at.dataframe[0].value
    assert list(table["protocol"]) == ["plain", "code"]  # the model alone first
    assert list(table["condition"]) == [
        "plain, no skill (gsm8k-plain-none)", "code, no skill (gsm8k-code-none)"
    ]  # fmt: skip
    code = table.set_index("protocol").loc["code"]
    assert (code["n"], code["passed"]) == (100, 47)
    assert (round(code["ci_low"], 2), round(code["ci_high"], 2)) == (0.37, 0.57)
    assert (round(code["s_per_task"], 1), round(code["s_median"], 1)) == (30.1, 26.2)
    assert round(code["tokens_per_task"]) == 1317 and round(code["replies_per_task"], 2) == 2.54
    assert code["stop_reasons"] == "submitted 97, stuck 3"
    # code - plain on the same 100 tasks: -0.030 [-0.140, +0.080], McNemar p 0.72.
    assert metrics(at) == {
        "Shared tasks": "100",
        "B - A": "-0.030",
        "McNemar p (exact)": "0.72",
        "Only A passed": "17",
        "Only B passed": "14",
    }
    assert "95% CI [-0.140, +0.080]" in at.caption[1].value
    assert "both passed 33" in at.caption[1].value
    flipped = at.dataframe[1].value
    assert list(flipped["passed"]) == ["only A"] * 17 + ["only B"] * 14
    # Each task links to its trajectory under each condition, in that condition's run.
    first = flipped.iloc[0]
    assert first["trajectory_a"].startswith("trajectories?runs=gsm8k-plain-none&traj=")
    assert first["trajectory_b"].startswith("trajectories?runs=gsm8k-code-none&traj=")
    assert at.query_params["cond_a"].startswith("gsm8k-plain-none:eval:gsm8k:test:plain:")

    # WikiTQ: S0 (a row even while unfinished, before its eval file exists) paired with no
    # skill on the tasks both ran; the figures counted here straight from the two files.
    model = "local/qwen2.5-coder-1.5b"
    at = open_page(
        protocol_runs, "conditions", monkeypatch, suite="wikitq",
        cond_a=f"wikitq-code-none:eval:wikitq:test:code:none:none:{model}",
        cond_b=f"wikitq-code-s0:eval:wikitq:test:code:7767ef14bb46:system:{model}",
    )  # fmt: skip
    table = at.dataframe[0].value.set_index(["protocol", "skill"])
    s0 = table.loc[("code", "wikitq-table-qa 7767ef14")]
    s0_runs, none_runs = (
        _outcomes(PROTOCOL_RUNS / name / "evals" / "trajectories.jsonl")
        for name in ("wikitq-code-s0", "wikitq-code-none")
    )
    assert (s0["n"], s0["passed"], s0["delivery"]) == (
        len(s0_runs), sum(passed for passed, _ in s0_runs.values()), "system"
    )  # fmt: skip
    assert s0["condition"] == "code, wikitq-table-qa 7767ef14, system (wikitq-code-s0)"
    stops = sorted(Counter(s for _, s in s0_runs.values()).items(), key=lambda kv: (-kv[1], kv[0]))
    assert s0["stop_reasons"] == ", ".join(f"{k} {v}" for k, v in stops)
    shared = s0_runs.keys() & none_runs.keys()
    only_none = sum(none_runs[t][0] and not s0_runs[t][0] for t in shared)
    only_s0 = sum(s0_runs[t][0] and not none_runs[t][0] for t in shared)
    assert metrics(at)["Shared tasks"] == str(len(shared))
    assert (metrics(at)["Only A passed"], metrics(at)["Only B passed"]) == (
        str(only_none), str(only_s0)
    )  # fmt: skip
    flips = only_none + only_s0  # exact McNemar: two-sided binomial test of the flips at 1/2
    p = min(
        1.0, 2 * sum(math.comb(flips, k) for k in range(min(only_none, only_s0) + 1)) / 2**flips
    )
    assert metrics(at)["McNemar p (exact)"] == f"{p:.3g}"
    if len(shared) < len(none_runs):
        left = f"Left out: {len(none_runs) - len(shared)} tasks only A ran, 0 only B ran."
        assert left in at.caption[-1].value
    assert at.query_params["suite"] == "wikitq"


def _outcomes(trajectories: Path) -> dict[str, tuple[bool, str]]:
    """Each task's (passed, stop reason) in a trajectories file (its last line per task)."""
    rows = [json.loads(line) for line in trajectories.read_text().splitlines() if line.strip()]
    return {r["task_id"]: (r["verdict"]["passed"], r["stop_reason"]) for r in rows}


def test_conditions_page_from_a_shared_link(
    protocol_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL chooses the runs, the suite and both sides (A and B swapped here)."""
    at = open_page(protocol_runs, "conditions", monkeypatch, suite="gsm8k")
    a, b = at.query_params["cond_a"], at.query_params["cond_b"]
    at = open_page(protocol_runs, "conditions", monkeypatch, suite="gsm8k", cond_a=b, cond_b=a)
    assert metrics(at)["B - A"] == "+0.030"
    assert (metrics(at)["Only A passed"], metrics(at)["Only B passed"]) == ("14", "17")
    one = open_page(protocol_runs, "conditions", monkeypatch, runs="gsm8k-code-none")
    assert len(one.dataframe[0].value) == 1
    assert "Only one condition here" in infos(one)


def test_runs_table_shows_the_protocol_measurements_as_evaluations(protocol_runs: Path) -> None:
    with data.open_index(protocol_runs) as con:
        table = data.runs_table(con, protocol_runs).set_index("run")
    assert set(table["kind"]) == {"eval"}
    assert table[["author", "analysts", "merge"]].isna().all().all()  # nothing evolved


def test_condition_rates_match_the_eval_files(protocol_runs: Path) -> None:
    """A finished condition's row is its eval file's summary, and its pairing is `compare`'s."""
    from toolkit.evaluate import compare, load_eval

    with data.open_index(protocol_runs) as con:
        rows = {r.run_id: r for r in data.queries.condition_rates(con, origin="eval")}
        assert set(rows) == {p.name for p in PROTOCOL_RUNS.iterdir() if p.is_dir()}
        for run in ("gsm8k-code-none", "gsm8k-plain-none", "wikitq-code-none"):
            summary = load_eval(protocol_runs / run / "evals" / "none" / "test.jsonl").summary
            row = rows[run]
            ci = summary.pass_rate
            assert (row.n, row.passed, row.rate) == (summary.n, summary.passed, ci.rate)
            assert (row.ci_low, row.ci_high) == (ci.ci.low, ci.ci.high)
            assert row.tokens_per_task == pytest.approx(summary.tokens_per_task)
            assert row.seconds_per_task == pytest.approx(summary.seconds_per_fresh_task)
            assert row.seconds_median == pytest.approx(summary.seconds_median)
            assert row.replayed == summary.cached_tasks == 0
            assert sum(row.stop_reasons.values()) == row.n and row.superseded == 0
        ours, _ = data.condition_comparison(con, rows["gsm8k-plain-none"], rows["gsm8k-code-none"])
    theirs = compare(
        protocol_runs / "gsm8k-plain-none" / "evals" / "none" / "test.jsonl",
        protocol_runs / "gsm8k-code-none" / "evals" / "none" / "test.jsonl",
    )
    assert ours.paired == theirs.paired
    assert sorted(ours.only_a_passed) == sorted(theirs.only_a_passed)


def test_conditions_page_on_an_evolved_run(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S0 and S* of one run are two conditions; every reply of the fixture's tasks came from
    the response cache, so no time per task is claimed; the rollout is its own origin."""
    at = open_page(runs, "conditions", monkeypatch)
    table = at.dataframe[0].value
    assert [s.split()[0] for s in table["skill"]] == ["S0", "S*"]
    assert list(table["n"]) == [6, 6] and list(table["replayed"]) == [6, 6]
    assert table["s_per_task"].isna().all()
    # S* against S0: fixed t3, t4, t6, broke t2 (as the runs page says).
    assert (metrics(at)["Only A passed"], metrics(at)["Only B passed"]) == ("1", "3")
    assert list(at.dataframe[1].value["task"]) == ["t2", "t3", "t4", "t6"]
    rollout = open_page(runs, "conditions", monkeypatch, origin="rollout")
    assert sorted(rollout.dataframe[0].value["skill"].str.split().str[0]) == ["S0", "no"]


def test_conditions_keep_the_latest_trajectory_of_a_task(tmp_path: Path) -> None:
    """A run evaluated again after its agent changed holds a task twice (another trajectory
    id): the condition counts it once, as its eval file does, and says one was left out."""
    from toolkit.trajectory import append_jsonl, read_trajectories

    runs = make_runs(tmp_path)
    evals = runs / RUN / "evals" / "trajectories.jsonl"
    first = read_trajectories(evals).records[0]
    again = first.model_copy(
        update={
            "id": "again-" + first.id[:10],
            "ended_at": first.ended_at + 100,
            "verdict": first.verdict.model_copy(update={"passed": not first.passed}),
        }
    )
    append_jsonl(evals, again)
    data.refresh_index(runs)
    with data.open_index(runs) as con:
        rows = data.queries.condition_rates(con, origin="eval")
        row = next(r for r in rows if r.skill_commit == first.skill_commit)
        records = data.queries.condition_records(con, row)
    assert (row.n, row.superseded) == (6, 1)
    assert [r.trajectory_id for r in records if r.task_id == first.task_id] == [again.id]
    assert row.passed == sum(r.passed for r in records)


def test_the_conditions_pages_every_run_is_no_choice_to_carry_on(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its default (every run) is not remembered as the user's choice, which the next page
    would start from; a choice is."""
    at = open_page(runs, "conditions", monkeypatch)
    assert at.multiselect(key="w_runs").value == [RUN, BASELINE]
    assert ui.SELECTED_RUNS not in at.session_state
    at.multiselect(key="w_runs").set_value([BASELINE]).run()
    assert at.session_state[ui.SELECTED_RUNS] == [BASELINE]


def test_a_stale_url_choice_falls_back_to_the_default(
    protocol_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found building the conditions page: after the suite changed, both sides' URL values
    were the other suite's, and B started on A's condition (the first) instead of its default."""
    at = open_page(protocol_runs, "conditions", monkeypatch, suite="gsm8k")
    at.selectbox(key="w_suite").set_value("wikitq").run()
    # The defaults: A the first condition (the model alone first, if it ran), B the next.
    a, b = at.query_params["cond_a"], at.query_params["cond_b"]
    assert a.startswith("wikitq-") and b.startswith("wikitq-") and a != b
    first = "wikitq-plain-none:" if (PROTOCOL_RUNS / "wikitq-plain-none").is_dir() else (
        "wikitq-code-none:"
    )  # fmt: skip
    assert a.startswith(first)


def test_merge_tree_of_a_sequential_run_is_a_chain(tmp_path: Path) -> None:
    """Each step of a sequential run is a level-1 merge: drawn as separate roots, the chain
    S0 -> S1 -> ... -> S* was lost; each step sits under the step that built on it."""
    from toolkit.consolidate.records import MergeRecord

    lines = [
        MergeRecord(
            level=1,
            group=f"step-000{k}",
            children=[f"p{k}a", f"p{k}b"],
            child_commits=[],
            status="merged",
            step=k,
        )  # fmt: skip
        for k in (1, 2)
    ]
    lines.append(
        MergeRecord(
            level=1, group="step-0003", children=[], child_commits=[], status="failed", step=3
        )
    )  # a batch with nothing kept: the skill stayed as it was
    (tmp_path / "merges.jsonl").write_text("".join(m.model_dump_json() + "\n" for m in lines))
    nodes = data.merge_tree(tmp_path).set_index("id")
    assert list(nodes[nodes["parent"] == ""].index) == ["L1/step-0003"]
    assert nodes.loc["L1/step-0001", "parent"] == "L1/step-0002"
    assert nodes.loc["L1/step-0002", "parent"] == "L1/step-0003"
    assert nodes.loc["p1a", "parent"] == "L1/step-0001"
    assert nodes.loc["p2b", "parent"] == "L1/step-0002"
    assert nodes.loc["L1/step-0002", "label"] == "step 2 (merged)"
