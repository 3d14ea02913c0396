"""The evolve-stage tables of the run index (analyses, patches, edits, merges, skill_lines,
ablations), the synthetic run generator, and the queries over them."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.repo_helpers import BASE_TEXT, SKILL, TS, edit_line, make_user_repo
from toolkit.cli import main
from toolkit.index import TABLES, build_index, connect
from toolkit.patch import Edit, Patch
from toolkit.queries import (
    ablation_effects,
    cost_by_stage,
    find_trajectories,
    line_support,
    usage_vs_pass_rate,
)
from toolkit.repo import PatchCommit, SkillRepo, consolidate, export_bundle, write_patches
from toolkit.rollout import Manifest, StageRecord
from toolkit.runfiles import RUN_FILE_SCHEMA_VERSION
from toolkit.synth import synth_runs

LINES = {"p-a": 3, "p-b": 10, "p-c": 15}


def _line(**fields):
    return json.dumps({"schema_version": 1, **fields})


def _leaf(pid: str, line: int) -> Patch:
    edit = Edit(
        file="SKILL.md",
        op="replace_in_section",
        target_section="SKILL.md",
        old_text=f"line {line}",
        content=f"lesson {pid}",
    )
    return Patch(reasoning=f"why {pid}", edits=[edit], id=pid, sources=[pid], support=1)


def _manifest(run: Path, config: dict, counts: dict) -> None:
    at = "2026-12-05T00:00:00+00:00"
    stage = StageRecord(status="done", started_at=at, config=config, counts=counts)
    manifest = Manifest(
        run_id=run.name, created_at=at, toolkit_version="0", stages={"consolidate": stage}
    )
    (run / "manifest.json").write_text(manifest.model_dump_json())


@pytest.fixture
def evolved(tmp_path):
    """A run with 3 leaf patches (lines 3, 10, 15), one union merge, analyses, ablations."""
    root = make_user_repo(tmp_path / "user")
    repo = SkillRepo.open(root)
    repo.snapshot_base("r1", root / "skills" / "demo", timestamp=TS)
    leaves = {pid: _leaf(pid, line) for pid, line in LINES.items()}
    commits = write_patches(
        repo,
        "r1",
        [
            PatchCommit(
                patch_id=pid,
                changes={SKILL: edit_line(BASE_TEXT, line, f"lesson {pid}")},
                subject=f"lesson {pid}",
                trajectory=f"traj-{pid}",
                outcome="fail",
                analyst="error-agentic",
                sources=[pid],
                support=1,
            )
            for pid, line in LINES.items()
        ],
        timestamp=TS,
    )
    result = consolidate(repo, "r1", [commits[p] for p in LINES], timestamp=TS)
    repo.close()
    run = tmp_path / "runs" / "r1"
    (run / "patches").mkdir(parents=True)
    merged = Patch(
        reasoning="union",
        edits=[e for p in leaves.values() for e in p.edits],
        sources=list(LINES),
    )
    for patch in [*leaves.values(), merged]:
        (run / "patches" / f"{patch.id}.json").write_text(patch.model_dump_json())
    analyses = [
        _line(
            id=f"a-{pid}",
            trajectory_id=f"traj-{pid}",
            task_id=f"t-{pid}",
            outcome="fail",
            analyst="error-agentic",
            model="fake/m",
            status="kept",
            reason=None,
            patch_id=pid,
            fix_passed=True,
            turns=3,
            tokens_in=100,
            tokens_out=10,
            started_at=1.0,
            ended_at=5.0,
            report="fixed it",
        )
        for pid in LINES
    ]
    analyses.append(
        _line(
            id="a-x",
            trajectory_id="traj-x",
            task_id="t-x",
            outcome="pass",
            analyst="success",
            model="fake/m",
            status="dropped",
            reason="nothing to learn",
            patch_id=None,
            fix_passed=None,
            turns=1,
            tokens_in=50,
            tokens_out=5,
            started_at=1.0,
            ended_at=2.0,
            report="",
        )
    )
    (run / "analyses.jsonl").write_text("\n".join(analyses) + "\n")
    merge = _line(
        level=1,
        group="g0001",
        children=list(LINES),
        child_commits=[commits[p] for p in LINES],
        commit=result,
        patch_id=merged.id,
        status="union",
        reason=None,
        conflicts=[],
        edits=[
            {"id": e.id, "cited": [e.id], "sources": [pid], "support": 1}
            for pid, e in ((pid, leaves[pid].edits[0]) for pid in LINES)
        ],
        dropped=[],
        model=None,
        tokens_in=0,
        tokens_out=0,
        started_at=6.0,
        ended_at=6.5,
    )
    (run / "merges.jsonl").write_text(merge + "\n")
    first = leaves["p-a"].edits[0].id
    ablations = [
        _line(
            edit_id=first,
            patch_id=merged.id,
            kind=kind,
            commit=result,
            split="test",
            seed=0,
            n=10,
            passed=passed,
            pass_rate=passed / 10,
            delta=delta,
            ci_low=delta - 0.1,
            ci_high=delta + 0.1,
            p_value=0.25,
            effect=-delta if kind == "ablate" else delta,
            effect_ci_low=(-delta if kind == "ablate" else delta) - 0.1,
            effect_ci_high=(-delta if kind == "ablate" else delta) + 0.1,
            support=2,
            gained=["t1"],
            lost=["t2", "t3"],
            tasks=[f"t{i}" for i in range(10)],
            reference_commit="c-ref",
            reference_skill_commit="tree-ref",
            suite="wikitq",
            model="fake/m",
            reference_passed=5,
            reference_pass_rate=0.5,
            file="SKILL.md",
            op="replace_in_section",
            target_section="SKILL.md",
            also_removed=[],
        )
        for kind, passed, delta in (("ablate", 4, -0.3), ("only", 6, 0.2))
    ]
    (run / "ablations.jsonl").write_text("\n".join(ablations) + "\n")
    _manifest(
        run,
        {"repo": str(root), "skill_path": "skills/demo"},
        {"result_commit": result, "final_patch_id": merged.id},
    )
    return {"runs": run.parent, "run": run, "root": root, "result": result, "commits": commits}


def _q(runs, sql, *params):
    with connect(runs) as con:
        return con.execute(sql, list(params)).fetchall()


def test_evolve_tables_hold_the_contract_files(evolved):
    runs = evolved["runs"]
    report = build_index(runs)
    assert report.read == ["r1"] and report.problems == []
    assert _q(runs, "SELECT status, count(*) FROM analyses GROUP BY 1 ORDER BY 1") == [
        ("dropped", 1),
        ("kept", 3),
    ]
    leaves = _q(runs, "SELECT id, commit, support FROM patches WHERE kind = 'leaf' ORDER BY id")
    assert leaves == [(p, evolved["commits"][p], 1) for p in sorted(LINES)]
    merged = _q(runs, "SELECT level, \"group\", commit, support FROM patches WHERE kind='merged'")
    assert merged == [(1, "g0001", evolved["result"], 3)]
    assert _q(runs, "SELECT count(*) FROM edits") == [(6,)]
    # The merged patch's edits carry the merge record's provenance.
    assert _q(
        runs,
        "SELECT e.sources, e.support FROM edits e JOIN patches p "
        "ON p.id = e.patch_id WHERE p.kind = 'merged' ORDER BY e.position",
    ) == [([p], 1) for p in LINES]
    assert _q(runs, "SELECT status, children, n_edits, conflict_hunks FROM merges") == [
        ("union", list(LINES), 3, 0)
    ]
    # The edit's effect as the report shows it (> 0 helps), not only the raw delta.
    assert _q(
        runs, "SELECT kind, delta, effect, p_value, support, lost FROM ablations ORDER BY kind"
    ) == [
        ("ablate", -0.3, 0.3, 0.25, 2, ["t2", "t3"]),
        ("only", 0.2, 0.2, 0.25, 2, ["t2", "t3"]),
    ]
    # What the edit was and what it was compared with, without reading ablations.jsonl.
    assert _q(
        runs,
        "SELECT reference_skill_commit, reference_pass_rate, suite, model, file, op "
        "FROM ablations WHERE kind = 'ablate'",
    ) == [("tree-ref", 0.5, "wikitq", "fake/m", "SKILL.md", "replace_in_section")]
    assert _q(runs, "SELECT result_commit, analyses, patches, merges, ablations FROM runs") == [
        (evolved["result"], 4, 4, 1, 2)
    ]


def test_skill_lines_blame_the_result(evolved):
    runs = evolved["runs"]
    build_index(runs)
    lines = _q(
        runs,
        "SELECT file, line, text, kind, patch_id, merge_commit, support, trajectories "
        "FROM skill_lines ORDER BY file, line",
    )
    # Every line of every file of S* (SKILL.md: 20 lines, references/notes.md: 1).
    assert [(f, n) for f, n, *_ in lines] == [("SKILL.md", n) for n in range(1, 21)] + [
        ("references/notes.md", 1)
    ]
    by_line = {n: rest for f, n, *rest in lines if f == "SKILL.md"}
    for pid, n in LINES.items():
        assert by_line[n] == [f"lesson {pid}", "patch", pid, evolved["result"], 1, [f"traj-{pid}"]]
    # The other lines predate the run: the user's own commit.
    assert by_line[1] == ["line 1", None, None, None, None, []]
    # A line that is a final edit's text names that edit (to join ablations on).
    named = _q(runs, "SELECT line, edit_id FROM skill_lines WHERE edit_id IS NOT NULL ORDER BY 1")
    assert named == sorted((n, _leaf(pid, n).edits[0].id) for pid, n in LINES.items())


def test_skill_lines_from_the_bundle_when_the_repository_is_gone(evolved):
    runs, run = evolved["runs"], evolved["run"]
    repo = SkillRepo.open(evolved["root"])
    export_bundle(repo, "r1", run / "refs.bundle")
    repo.close()
    build_index(runs)
    before = _q(runs, "SELECT * FROM skill_lines ORDER BY file, line")
    shutil.rmtree(evolved["root"])
    (run / "refs.bundle").touch()  # a changed file: the run is read again
    report = build_index(runs)
    assert report.read == ["r1"] and report.problems == []
    assert _q(runs, "SELECT * FROM skill_lines ORDER BY file, line") == before


def test_missing_repository_is_an_empty_skill_lines_table(evolved):
    runs = evolved["runs"]
    shutil.rmtree(evolved["root"])
    report = build_index(runs)
    assert report.problems == []
    assert _q(runs, "SELECT count(*) FROM skill_lines") == [(0,)]
    assert _q(runs, "SELECT count(*) FROM patches WHERE commit IS NULL") == [(3,)]


def test_a_run_without_evolve_files_has_empty_tables(tmp_path):
    run = tmp_path / "runs" / "r0"
    run.mkdir(parents=True)
    _manifest(run, {}, {})
    report = build_index(run.parent)
    assert report.read == ["r0"] and report.problems == []
    with connect(run.parent) as con:
        for table in TABLES:
            expected = 1 if table == "runs" else 0
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,)


def test_bad_lines_newer_versions_and_bad_repositories_are_reported(evolved, tmp_path):
    runs, run = evolved["runs"], evolved["run"]
    with (run / "merges.jsonl").open("a") as f:
        f.write('{"schema_version": 1, "level": 0}\n')  # invalid
        f.write(
            json.dumps(
                {
                    **json.loads((run / "merges.jsonl").read_text().splitlines()[0]),
                    "schema_version": RUN_FILE_SCHEMA_VERSION + 1,
                }
            )
            + "\n"
        )
        f.write('{"torn": ')
    (run / "patches" / "broken.json").write_text("{not json")
    report = build_index(runs)
    assert report.read == ["r1"]
    assert len(report.problems) == 4
    assert any("newer than this toolkit" in p for p in report.problems)
    assert any("broken.json" in p for p in report.problems)
    assert _q(runs, "SELECT count(*) FROM merges") == [(1,)]
    # A manifest from a newer schema version: the run is skipped, its old compaction kept.
    data = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**data, "schema_version": 99}))
    report = build_index(runs)
    assert report.skipped == ["r1"] and "newer" in report.problems[0]
    assert _q(runs, "SELECT count(*) FROM merges") == [(1,)]
    # A repository path that is not a git repository: reported, the rest is indexed.
    not_git = tmp_path / "plain"
    not_git.mkdir()
    _manifest(run, {"repo": str(not_git), "skill_path": "skills/demo"}, {})
    report = build_index(runs)
    assert report.read == ["r1"]
    assert any("skill lines not read" in p for p in report.problems)
    assert _q(runs, "SELECT count(*) FROM skill_lines") == [(0,)]
    assert _q(runs, "SELECT count(*) FROM analyses") == [(4,)]


def test_a_new_evolve_file_reindexes_the_run(evolved):
    runs, run = evolved["runs"], evolved["run"]
    ablations = (run / "ablations.jsonl").read_text()
    (run / "ablations.jsonl").unlink()
    build_index(runs)
    assert _q(runs, "SELECT count(*) FROM ablations") == [(0,)]
    assert build_index(runs).read == []
    (run / "ablations.jsonl").write_text(ablations)
    assert build_index(runs).read == ["r1"]
    assert _q(runs, "SELECT count(*) FROM ablations") == [(2,)]


def test_ablation_effects_of_a_producer_that_wrote_no_effect(evolved):
    """``effect`` is optional in the run-file contract: it is derived from delta as the
    toolkit writes it (negated for an ablation, its interval flipped)."""
    runs = evolved["runs"]
    path = evolved["run"] / "ablations.jsonl"
    drop = ("effect", "effect_ci_low", "effect_ci_high")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in x.items() if k not in drop}) + "\n"
                            for x in lines))  # fmt: skip
    build_index(runs)
    with connect(runs) as con:
        effects = {e.kind: e for e in ablation_effects(con)}
    assert (effects["ablate"].effect, effects["ablate"].effect_ci_low) == (
        pytest.approx(0.3), pytest.approx(0.2)
    )  # fmt: skip
    assert effects["ablate"].effect_ci_high == pytest.approx(0.4)
    assert effects["only"].effect == pytest.approx(0.2)


def test_evolve_queries(evolved):
    runs = evolved["runs"]
    build_index(runs)
    with connect(runs) as con:
        effects = ablation_effects(con)
        assert [(e.kind, e.delta, e.support, e.content) for e in effects] == [
            ("ablate", -0.3, 1, "lesson p-a"),
            ("only", 0.2, 1, "lesson p-a"),
        ]
        # The edit's effect as report and ablate show it (> 0 helps): removing the edit cost
        # 30 pp, so it helps; the raw delta has the opposite sign for an ablation.
        assert [(e.effect, e.effect_ci_low, e.effect_ci_high, e.p_value) for e in effects] == [
            (pytest.approx(0.3), pytest.approx(0.2), pytest.approx(0.4), 0.25),
            (pytest.approx(0.2), pytest.approx(0.1), pytest.approx(0.3), 0.25),
        ]
        support = line_support(con, "r1", file="SKILL.md")
        assert len(support) == 20
        assert [(s.line, s.support, s.trajectories) for s in support if s.kind] == [
            (n, 1, 1) for n in sorted(LINES.values())
        ]
        stages = {(s.stage, s.model): s for s in cost_by_stage(con)}
        assert stages[("analyse", "fake/m")].units == 4
        assert stages[("analyse", "fake/m")].tokens_in == 350
        assert stages[("consolidate", "none")].seconds_mean == pytest.approx(0.5)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    runs = tmp_path_factory.mktemp("synth") / "runs"
    report = synth_runs(runs, trajectories=120, runs=2, steps=4, patches=6, group_size=3)
    build_index(runs)
    return runs, report


def test_synth_runs_are_deterministic_and_complete(synth, tmp_path):
    runs, report = synth
    assert report.runs == ["synth-0-000", "synth-0-001"] and report.trajectories == 120
    again = tmp_path / "runs"
    synth_runs(again, trajectories=120, runs=2, steps=4, patches=6, group_size=3)
    files = sorted(
        p.relative_to(runs)
        for p in runs.rglob("*")
        if p.is_file() and p.parts[len(runs.parts)] not in (".index", ".synth-repo")
    )
    names = {p.name for p in files}
    assert {"manifest.json", "splits.json", "trajectories.jsonl", "analyses.jsonl"} <= names
    assert {"merges.jsonl", "ablations.jsonl", "llm_calls.jsonl", "refs.bundle"} <= names
    for rel in files:
        if rel.name not in ("manifest.json", "refs.bundle"):  # these name the repo path
            assert (runs / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_synth_runs_read_as_real_runs_by_the_report(synth):
    """Synth writes the same file contract as real runs: full ablation records, eval files
    with a summary, one model per evaluation, so the report shows scores and effects."""
    from toolkit.attribution.ablation import AblationRecord
    from toolkit.attribution.report import render_report

    runs, _ = synth
    run_dir = runs / "synth-0-000"
    lines = (run_dir / "ablations.jsonl").read_text().splitlines()
    records = [AblationRecord.model_validate_json(line) for line in lines]
    assert records and {r.kind for r in records} == {"ablate", "only"}
    text = render_report(run_dir, repo=runs / ".synth-repo")
    assert "| S* - S0 (paired) |" in text and "leave-one-out effect" in text
    assert "No evaluation of both S0 and S*" not in text
    # provenance --run-dir finds the final merge as support does (by the manifest's final
    # patch id; synth's merges are not marked forced): it said "no finished consolidation".
    shown = CliRunner().invoke(
        main,
        ["provenance", "skills/synth/SKILL.md", "--repo", str(runs / ".synth-repo"), "--ref",
         "t2s/synth-0-000/result", "--run-dir", str(run_dir), "--json"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert any(r["edit_id"] and r["support"] > 1 for r in json.loads(shown.output))


def test_synth_index_is_consistent(synth):
    runs, report = synth
    totals = _q(
        runs,
        "SELECT sum(trajectories + eval_trajectories), sum(patches), sum(merges), "
        "sum(ablations) FROM runs",
    )
    assert totals == [(120, report.patches, report.merges, report.ablations)]
    # Every patch line of S* names a leaf patch of its run; every merge line its merge.
    assert _q(
        runs,
        "SELECT count(*) FROM skill_lines l LEFT JOIN patches p "
        "ON p.run_id = l.run_id AND p.id = l.patch_id WHERE l.kind IS NOT NULL "
        "AND (p.id IS NULL OR (l.kind = 'patch') != (p.kind = 'leaf'))",
    ) == [(0,)]
    merge_lines = _q(
        runs,
        "SELECT l.support, p.support FROM skill_lines l "
        "JOIN merges m ON m.run_id = l.run_id AND m.commit = l.commit "
        "JOIN patches p ON p.run_id = m.run_id AND p.id = m.patch_id "
        "WHERE l.kind = 'merge'",
    )
    assert merge_lines and all(a == b for a, b in merge_lines)
    assert _q(runs, "SELECT count(*) FROM skill_lines WHERE kind = 'patch'") == [(12,)]
    with connect(runs) as con:
        assert len(ablation_effects(con, "synth-0-000")) == report.ablations // 2
        assert all(e.support for e in ablation_effects(con))
        assert {s.stage for s in cost_by_stage(con)} == {
            "rollout",
            "analyse",
            "consolidate",
            "evaluate",
        }
        effects = usage_vs_pass_rate(con)
        assert effects and all(e.n_with + e.n_without > 0 for e in effects)
        first = effects[0]
        found = find_trajectories(
            con,
            uses=first.ref,
            skill_commit=first.skill_commit[:8],
            run_id=first.run_id,
            origin=first.origin,
            split=first.split,
        )
        assert len(found) == first.n_with
        failed = find_trajectories(con, run_id="synth-0-001", passed=False, limit=5)
        assert len(failed) == 5 and not any(t.passed for t in failed)


def test_synth_and_query_cli(tmp_path):
    runs = tmp_path / "runs"
    cli = CliRunner()
    result = cli.invoke(main, ["synth", str(runs), "--trajectories", "40", "--patches", "3"])
    assert result.exit_code == 0, result.output
    assert "Wrote 1 run to" in result.output
    assert (runs / "synth-0-000").is_dir()
    helped = cli.invoke(main, ["synth", "--help"]).output  # it said synth-<seed>-<k>
    assert "synth-0-000" in " ".join(helped.split())
    again = cli.invoke(main, ["synth", str(runs), "--trajectories", "40", "--patches", "3"])
    assert again.exit_code == 1 and "already exists" in again.output
    assert cli.invoke(main, ["index", str(runs)]).exit_code == 0
    out = cli.invoke(
        main,
        [
            "query",
            "SELECT kind, count(*) AS n FROM skill_lines WHERE kind IS NOT NULL "
            "GROUP BY 1 ORDER BY 1",
            "--runs-dir",
            str(runs),
            "--format",
            "json",
        ],
    )
    assert json.loads(out.output) == [{"kind": "merge", "n": 1}, {"kind": "patch", "n": 3}]
    refs = cli.invoke(
        main, ["query", "SELECT 'a/b' AS ref", "--runs-dir", str(runs), "--format", "json"]
    )
    assert refs.output.strip() == '[{"ref": "a/b"}]'  # pandas wrote "a\\/b"
    few = cli.invoke(main, ["synth", str(tmp_path / "x"), "--trajectories", "20", "--runs", "2"])
    assert few.exit_code == 1 and "give at least 22 (each run needs patches + 3 = 11:" in few.output


def _bulk_and_line_rows(run: Path) -> tuple[dict, dict]:
    """Rows of the bulk tables read by DuckDB alone and read line by line with the models."""
    import duckdb

    from toolkit.index import SCHEMAS, read_run

    slow, _, _ = read_run(run)
    con = duckdb.connect()
    rows, inserts, problems = read_run(run, con)
    assert problems == []
    fast, line = {}, {}
    for table in ("trajectories", "steps", "section_uses", "llm_calls"):
        assert inserts[table] and rows[table] == []
        columns = ", ".join(f'"{c}"' for c in SCHEMAS[table])
        fast[table] = sorted(
            (
                r
                for sql in inserts[table]
                for r in con.execute(f"SELECT {columns} FROM ({sql})").fetchall()
            ),
            key=repr,
        )
        line[table] = sorted(
            (tuple(r.get(c) for c in SCHEMAS[table]) for r in slow[table]), key=repr
        )
    return fast, line


def test_bulk_path_gives_the_rows_the_models_give(synth, tmp_path):
    runs, _ = synth
    fast, line = _bulk_and_line_rows(runs / "synth-0-000")
    assert fast == line and len(fast["steps"]) == 240


def test_a_file_duckdb_cannot_vouch_for_goes_line_by_line(synth, tmp_path):
    runs, _ = synth
    run = tmp_path / "runs" / "synth-0-000"
    shutil.copytree(runs / "synth-0-000", run)
    lines = (run / "trajectories.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["stop_reason"] = "gave_up"  # parses and casts, but the model refuses it
    (run / "trajectories.jsonl").write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]))
    report = build_index(run.parent)
    assert len(report.problems) == 1 and "stop_reason" in report.problems[0]
    assert _q(run.parent, "SELECT trajectories FROM runs") == [(len(lines) - 1,)]


def test_usage_vs_pass_rate_keeps_splits_apart_as_the_usage_command_does(tmp_path):
    """Found on the real example run: S0's users of `loading-the-table` read 5 at 20% vs 13
    at 31%, its 8 rollouts on the train split pooled with its 10 test evaluations, where
    `trace2skill usage` (and the report) said 4 of 10 at 0% vs 6 at 33% on the test split."""
    example = Path(__file__).resolve().parents[1] / "runs" / "example-wikitq"
    runs = tmp_path / "runs"
    shutil.copytree(example, runs / "example-wikitq")
    build_index(runs)
    with connect(runs) as con:
        effects = usage_vs_pass_rate(con)
    s0 = "7767ef14bb46e167a3ec9e54bbc2812ddaf8bac2"
    rows = {
        (e.origin, e.split): e
        for e in effects
        if e.skill_commit == s0 and e.ref == "SKILL.md#table-qa/loading-the-table"
    }
    assert set(rows) == {("eval", "test"), ("rollout", "train")}
    test = rows["eval", "test"]
    assert (test.run_id, test.protocol, test.model) == (
        "example-wikitq", "code", "local/qwen2.5-coder-1.5b"
    )  # fmt: skip
    assert (test.n_with, test.rate_with, test.n_without) == (4, 0.0, 6)
    assert test.rate_without == pytest.approx(2 / 6)
    train = rows["rollout", "train"]
    assert (train.n_with, train.n_without) == (1, 7)
