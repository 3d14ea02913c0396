"""The committed example run: real, complete, small, and its git history travels with it.

``runs/example-wikitq`` was produced by ``make demo`` (the embedded model, never edited by
hand) and then ``trace2skill ablate``; a fresh clone explores it with the index, the app, the
attribution commands and ``trace2skill pr --dry-run``. These checks keep it that way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from toolkit.llm import read_calls
from toolkit.llm.model_store import tier_for_model
from toolkit.repo.bundle import import_bundle
from toolkit.repo.store import SkillRepo
from toolkit.runs import read_manifest
from toolkit.trajectory import Trajectory

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "example-wikitq"
RUN = ROOT / "runs" / RUN_ID


def _jsonl(name: str) -> list[dict]:
    path = RUN / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> SkillRepo:
    root = tmp_path_factory.mktemp("fresh-repo")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = SkillRepo.open(root)
    info = import_bundle(repo, RUN / "refs.bundle")
    assert info.run == RUN_ID
    return repo


def test_manifest_names_the_model_and_its_weights() -> None:
    manifest = read_manifest(RUN)
    assert manifest is not None and manifest.run_id == RUN_ID
    evolve = manifest.stages["evolve"]
    assert evolve.status == "done"
    model = evolve.config["model"]
    tier = tier_for_model(model)
    assert tier is not None, f"{model} is not an embedded model"
    assert evolve.counts["models"][model]["sha256"] == tier.sha256


def test_real_model_use_is_recorded() -> None:
    calls = read_calls(RUN)
    fresh = [c for c in calls if not c.cache_hit and c.error is None]
    assert fresh and all(c.tokens_in > 0 and c.tokens_out > 0 for c in fresh)
    # Rollouts answered from the response cache record 0 tokens (they cost nothing); the
    # run's evaluations made fresh calls.
    lines = [
        line
        for name in ("trajectories.jsonl", "evals/trajectories.jsonl")
        for line in (RUN / name).read_text().splitlines()
        if line.strip()
    ]
    trajectories = [Trajectory.model_validate_json(line) for line in lines]
    assert trajectories and sum(t.tokens_in for t in trajectories) > 0
    summary = json.loads((RUN / "summary.json").read_text())
    assert summary["run_id"] == RUN_ID and summary["s0"]["n"] > 0


def test_small_enough_to_commit() -> None:
    size = sum(p.stat().st_size for p in RUN.rglob("*") if p.is_file())
    assert size < 5 * 2**20, f"{size} bytes"


def test_every_patch_and_merge_is_in_the_bundle(imported: SkillRepo) -> None:
    refs = imported.run_refs(RUN_ID)
    assert f"t2s/{RUN_ID}/base" in refs and f"t2s/{RUN_ID}/result" in refs
    kept = [a["patch_id"] for a in _jsonl("analyses.jsonl") if a["status"] == "kept"]
    assert kept, "the run kept no patch"
    for patch_id in kept:
        assert (RUN / "patches" / f"{patch_id}.json").is_file()
        assert f"t2s/{RUN_ID}/patch/{patch_id}" in refs
    commits = [m["commit"] for m in _jsonl("merges.jsonl") if m.get("commit")]
    for commit in commits:
        found = subprocess.run(
            ["git", "-C", str(imported.root), "cat-file", "-e", f"{commit}^{{commit}}"],
            check=False,
        )
        assert found.returncode == 0, f"merge commit {commit} is not in the bundle"
    # S* descends from every kept patch: the consolidation took them all in (or says why not).
    result = refs[f"t2s/{RUN_ID}/result"]
    for patch_id in kept:
        tip = refs[f"t2s/{RUN_ID}/patch/{patch_id}"]
        ancestor = subprocess.run(
            ["git", "-C", str(imported.root), "merge-base", "--is-ancestor", tip, result],
            check=False,
        )
        assert ancestor.returncode == 0, f"patch {patch_id} is not in S*"


def test_attribution_reads_the_run_in_a_clone_that_imported_its_bundle(
    imported: SkillRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run recorded the repository it was made in, which a user's clone is not: the
    commands fall back to the current repository, where the bundle's refs were imported."""
    import re
    import shutil

    from toolkit.attribution.run import open_run

    # A copy whose recorded repository is surely absent (the making machine may be this one).
    run = imported.root / "runs" / RUN_ID
    shutil.copytree(RUN, run)
    manifest = run / "manifest.json"
    text = re.sub(r'"repo": "[^"]*"', '"repo": "/nonexistent/made-elsewhere"', manifest.read_text())
    manifest.write_text(text)
    monkeypatch.chdir(imported.root)
    context, store = open_run(run)
    try:
        assert context.run == RUN_ID and store.root == imported.root.resolve()
        assert context.final_patch.edits
    finally:
        store.close()
    # The evaluated versions are named, not shown as tree ids (a new user's report).
    from click.testing import CliRunner

    from toolkit.cli import main

    shown = CliRunner().invoke(
        main, ["trajectories", "show", str(run), "--evals", "--task", "nu-3155"]
    )
    skills = [line.split()[2] for line in shown.output.splitlines()[1:-1]]
    assert skills[:2] == ["S0", "S*"] and all(
        s.startswith(("ablate/", "only/")) for s in skills[2:]
    ), shown.output


def test_a_clone_holding_the_run_wins_over_the_recorded_repository(
    imported: SkillRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: the example run recorded a repository that still existed
    on the machine, and `prune` run in the user's clone wrote its commit there."""
    import re
    import shutil

    from toolkit.attribution.run import open_run

    elsewhere = tmp_path / "elsewhere"
    subprocess.run(["git", "init", "-q", str(elsewhere)], check=True)
    other = SkillRepo.open(elsewhere)
    import_bundle(other, RUN / "refs.bundle")
    other.close()
    run = tmp_path / "runs" / RUN_ID
    shutil.copytree(RUN, run)
    manifest = run / "manifest.json"
    manifest.write_text(re.sub(r'"repo": "[^"]*"', f'"repo": "{elsewhere}"', manifest.read_text()))
    monkeypatch.chdir(imported.root)  # the user's clone, which imported the bundle
    _, store = open_run(run)
    try:
        assert store.root == imported.root.resolve()
    finally:
        store.close()
    bare = tmp_path / "no-refs"
    subprocess.run(["git", "init", "-q", str(bare)], check=True)
    monkeypatch.chdir(bare)  # a repository without the run: the recorded one holds it
    _, store = open_run(run)
    try:
        assert store.root == elsewhere.resolve()
    finally:
        store.close()


def test_the_index_counts_a_lines_support_as_support_does(
    imported: SkillRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: `support` said 5 for a merged lesson's line (the leaves
    behind its edit), the index and the app 1 (the patch git blame credits)."""
    import shutil

    from toolkit.attribution.run import open_run
    from toolkit.attribution.support import line_support
    from toolkit.index import build_index, connect

    runs = imported.root / "runs-index"
    shutil.copytree(RUN, runs / RUN_ID)
    monkeypatch.chdir(imported.root)
    context, store = open_run(runs / RUN_ID)
    try:
        lines = line_support(store, context)
        expected = {(r.file, r.line): r.support for r in lines if r.edit_id}
        # A blank line is no lesson: the one S0 had before an edit was credited to it.
        assert all(r.text.strip() for r in lines if r.edit_id)
    finally:
        store.close()
    build_index(runs)
    with connect(runs) as con:
        rows = con.execute("SELECT file, line, support FROM skill_lines").fetchall()
    indexed = {(f, ln): s for f, ln, s in rows}
    assert expected and max(expected.values()) > 1  # merged lessons with several leaves
    assert {k: indexed.get(k) for k in expected} == expected


def test_trajectories_show_names_echoed_sections() -> None:
    """Its help promises sections "read, cited or echoed"; echoed ones were never shown."""
    from click.testing import CliRunner

    from toolkit.cli import main

    evals = [json.loads(line) for line in (RUN / "evals" / "trajectories.jsonl").open()]
    found = next(t for t in evals if any(u["kind"] == "echoed" for u in t["section_uses"]))
    use = next(u for u in found["section_uses"] if u["kind"] == "echoed")
    shown = CliRunner().invoke(
        main, ["trajectories", "show", str(RUN), "--evals", "--id", found["id"]]
    )
    assert shown.exit_code == 0, shown.output
    step = next(line for line in shown.output.splitlines() if line.startswith(f"[{use['step']}]"))
    assert f"echoed {use['file']}#{use['section_id']}" in step


def test_report_compares_section_usage_on_the_same_tasks(
    imported: SkillRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report divided S0's uses by its rollouts and evaluations (18) and S*'s by its
    evaluations (10); the PR body by the evaluations for both."""
    import re

    from toolkit.attribution.report import render_report

    monkeypatch.chdir(imported.root)
    text = render_report(RUN)
    usage = text.split("## Section usage (S0 vs S*, evaluation tasks)")[1].split("##")[0]
    counts = re.findall(r"\| (\d+)/(\d+) \| (\d+)/(\d+) \|", usage)
    n = json.loads((RUN / "summary.json").read_text())["s0"]["n"]
    assert counts and all(int(a) == n and int(b) == n for _, a, _, b in counts)


def test_prune_deletes_a_reference_it_would_leave_empty(
    imported: SkillRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new-user trial: pruning a reference's one top-level section left an empty
    file behind."""
    from toolkit.attribution.prune import propose_prune

    monkeypatch.chdir(imported.root)
    proposal = propose_prune(RUN, write=False)
    assert proposal.patch is not None
    gone = [e.file for e in proposal.patch.edits if e.op == "delete_file"]
    assert gone and all(name.startswith("references/") for name in gone)
    assert not any(e.file in gone for e in proposal.patch.edits if e.op == "delete_section")


def test_usage_compares_s0_and_s_star_on_the_same_tasks_as_the_report(
    imported: SkillRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a trial: `usage` divided S0's uses by its rollouts (train) and evaluations
    (test), 18, and S*'s by its evaluations, 10; the report said 0/10 where usage said 1/18."""
    import re

    from click.testing import CliRunner

    from toolkit.cli import main

    monkeypatch.chdir(imported.root)
    n = json.loads((RUN / "summary.json").read_text())["s0"]["n"]
    out = CliRunner().invoke(main, ["usage", str(RUN)])
    assert out.exit_code == 0, out.output
    header, *rows = out.output.splitlines()
    assert header == (
        f"trajectories (split 'test'): S0: {n} evaluation trajectories on {n} task(s); "
        f"S*: {n} evaluation trajectories on {n} task(s)"
    )
    assert rows and all(re.search(rf" used \d+/{n} ", row) for row in rows)
    rollouts = CliRunner().invoke(main, ["usage", str(RUN), "--origin", "rollout"])
    assert rollouts.exit_code == 0, rollouts.output
    learned = len(_jsonl("trajectories.jsonl"))
    assert rollouts.output.splitlines()[0] == (
        f"trajectories (every split): S0: {learned} rollout trajectories on {learned} task(s); "
        "S*: 0 rollout trajectories on 0 task(s)"
    )
