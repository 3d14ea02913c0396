"""Attribution: ablation, usage, support, pruning and the report on a fixture run (fake LLM)."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from tests.attribution_helpers import (
    CHECK,
    HARM,
    S0_TEXT,
    SKILL_PATH,
    TIP_A,
    agent_reply,
    make_run,
)
from toolkit.agent import AgentConfig
from toolkit.attribution import (
    AblationRecord,
    AttributionError,
    ablate,
    open_run,
    plan_versions,
    read_ablations,
    section_usage,
    select_edits,
)
from toolkit.attribution.prune import propose_prune, read_prune
from toolkit.attribution.report import ScoreLine, render_report
from toolkit.attribution.run import load_version, read_run_trajectories, version_labels
from toolkit.attribution.support import line_support
from toolkit.cli import main
from toolkit.evaluate import EvalResult
from toolkit.llm import LLMConfig, fake_model
from toolkit.repo import SkillRepo, read_bundle
from toolkit.runs import read_manifest
from toolkit.tasks import get_suite

# Contract fields of ablations.jsonl (COMMON.md run-file contract).
CONTRACT = {
    "schema_version", "edit_id", "patch_id", "kind", "commit", "split", "seed", "n", "passed",
    "pass_rate", "delta", "ci_low", "ci_high", "tasks",
}  # fmt: skip


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A fixture run, ablated once over every edit (both kinds) on all 12 tasks."""
    tmp = tmp_path_factory.mktemp("attr")
    run = make_run(tmp)
    suite = get_suite("jsonl", path=run["tasks"])
    plans = []
    with fake_model(agent_reply, name="attr-agent") as model:
        config = LLMConfig(model=model, cache=False, cache_dir=tmp / "cache")
        outcome = ablate(
            run["run_dir"], suite=suite, split="all", top=None, llm_config=config,
            resamples=2000, on_plan=plans.append,
        )  # fmt: skip
    return {**run, "outcome": outcome, "plans": plans, "suite": suite, "tmp": tmp}


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout


def _versions(run_dir):
    """The run's skill versions: commit -> (label, skill)."""
    context, store = open_run(run_dir)
    try:
        return version_labels(store, context)
    finally:
        store.close()


def _by(records):
    return {(r.edit_id, r.kind): r for r in records}


def test_select_edits_by_support_prefix_and_unknown(done):
    context, store = open_run(done["run_dir"])
    store.close()
    patch = context.final_patch
    assert [e.id for e in select_edits(patch, context.support, top=1)] == [TIP_A.id]
    # Ties keep patch order.
    assert [e.id for e in select_edits(patch, context.support, top=None)] == [
        TIP_A.id, CHECK.id, HARM.id,
    ]  # fmt: skip
    assert [e.id for e in select_edits(patch, context.support, edits=[HARM.id[:6]])] == [HARM.id]
    with pytest.raises(AttributionError, match="no edit of patch"):
        select_edits(patch, context.support, edits=["zzz"])
    # An ambiguous prefix lists the edits it matches, not every edit of the patch.
    with pytest.raises(AttributionError) as err:
        select_edits(patch, context.support, edits=[""])
    assert f"{len(patch.edits)} edits of patch" in str(err.value)
    assert context.support[TIP_A.id].support == 3
    assert context.support[TIP_A.id].trajectories == ["traj-0", "traj-1", "traj-3"]
    assert context.support[HARM.id].outcomes == {"traj-3": "fail"}


def test_plan_builds_versions_with_the_patch_engine(done):
    context, store = open_run(done["run_dir"])
    try:
        s0, _ = load_version(store, context, context.base)
        star, _ = load_version(store, context, context.result)
    finally:
        store.close()
    versions, skipped, mismatch = plan_versions(
        s0, star, context.final_patch, context.final_patch.edits, skill_path=SKILL_PATH
    )
    assert mismatch == []  # the fixture's S* is exactly S0 + final patch
    kinds = {(v.edit_id, v.kind): v for v in versions}
    # HARM anchors in TIP_A's text: removing TIP_A removes it too, and it cannot stand alone.
    assert kinds[(TIP_A.id, "ablate")].also_removed == [HARM.id]
    assert [(s.edit_id, s.kind) for s in skipped] == [(HARM.id, "only")]
    assert (
        "MULTIPLY-EVEN"
        not in kinds[(TIP_A.id, "ablate")].changes[f"{SKILL_PATH}/SKILL.md"].decode()
    )


def test_ablation_effects_match_the_scripted_agent(done):
    records = _by(done["outcome"].records)
    assert len(records) == 5
    # S0 passes q0,q4,q8 (3/12); S* passes q2,q3,q6,q9,q10 (5/12).
    assert done["outcome"].s0.summary.passed == 3 and done["outcome"].star.summary.passed == 5
    harm = records[(HARM.id, "ablate")]
    assert (harm.passed, harm.reference_passed, harm.n) == (8, 5, 12)
    assert harm.delta == pytest.approx(3 / 12) and harm.effect == pytest.approx(-3 / 12)
    assert harm.gained == ["q0", "q4", "q8"] and harm.lost == []
    assert harm.effect_ci_low <= harm.effect <= harm.effect_ci_high
    tip_only = records[(TIP_A.id, "only")]
    assert (tip_only.passed, tip_only.reference_passed) == (6, 3)
    assert tip_only.effect == pytest.approx(3 / 12) and tip_only.effect_ci_high > 0
    check_only = records[(CHECK.id, "only")]
    assert check_only.passed == 6  # multiples of 3 or of 4
    assert records[(TIP_A.id, "ablate")].also_removed == [HARM.id]
    assert all(r.tasks == [f"q{i}" for i in range(12)] for r in records.values())


def test_ablations_file_follows_the_contract_and_reruns_add_nothing(done):
    path = done["run_dir"] / "ablations.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 5
    assert all(set(line) >= CONTRACT for line in lines)
    context, store = open_run(done["run_dir"])
    refs = store.run_refs(context.run)
    store.close()
    for line in lines:
        assert refs[f"t2s/r1/{line['kind']}/{line['edit_id']}"] == line["commit"]
        assert line["patch_id"] == done["final"].id
    # The ablate commit's parent is S*, the only commit's parent is S0.
    tip = next(x for x in lines if x["kind"] == "ablate" and x["edit_id"] == TIP_A.id)
    assert _git(done["repo"], "rev-parse", tip["commit"] + "^").strip() == done["result"]
    before = path.read_bytes()
    with fake_model(agent_reply, name="attr-agent") as model:
        config = LLMConfig(model=model, cache=False, cache_dir=done["tmp"] / "cache")
        again = ablate(
            done["run_dir"], suite=done["suite"], split="all", top=None, llm_config=config,
            resamples=2000,
        )  # fmt: skip
    assert path.read_bytes() == before  # same refs, reused rollouts, identical lines
    assert [r.model_dump() for r in again.records] == [
        r.model_dump() for r in done["outcome"].records
    ]
    manifest = json.loads((done["run_dir"] / "manifest.json").read_text())
    assert manifest["stages"]["attribute"]["status"] == "done"
    assert manifest["stages"]["attribute"]["counts"]["records"] == 5


def test_plan_is_announced_with_its_cost(done):
    plan = done["plans"][0]
    assert plan.rollouts == (2 + 5) * 12
    assert plan.edits == [TIP_A.id, CHECK.id, HARM.id]
    assert [s.edit_id for s in plan.skipped] == [HARM.id]


def test_subsample_and_single_edit(done, tmp_path):
    run = make_run(tmp_path)
    with fake_model(agent_reply) as model:
        config = LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache")
        outcome = ablate(
            run["run_dir"], suite=get_suite("jsonl", path=run["tasks"]), split="all",
            tasks=6, edits=[CHECK.id], kinds=("ablate",), llm_config=config, resamples=500,
        )  # fmt: skip
    (record,) = outcome.records
    assert record.n == 6 and len(record.tasks) == 6 and record.kind == "ablate"
    assert outcome.star.summary.task_ids == record.tasks


def test_section_usage_across_versions(done):
    versions = _versions(done["run_dir"])
    assert {label for label, _ in versions.values()} >= {"S0", "S*", f"ablate/{HARM.id}"}
    rows = section_usage(read_run_trajectories(done["run_dir"]), versions)
    star = {r.ref: r for r in rows if r.version == "S*"}
    assert star["SKILL.md#demo/workflow"].citations == 4  # q0, q3, q6, q9
    assert star["SKILL.md#demo/workflow"].rate_with == pytest.approx(0.75)  # q0 fails (HARMFUL)
    assert star["SKILL.md#demo/tip-a"].used == 6
    assert star["SKILL.md#demo/old-tips"].used == 0 and star["SKILL.md#demo/old-tips"].in_skill
    s0 = {r.ref: r for r in rows if r.version == "S0"}
    assert "SKILL.md#demo/tip-a" not in s0 and s0["SKILL.md#demo/workflow"].used == 0


def test_line_support_joins_edits_and_outcomes(done):
    context, store = open_run(done["run_dir"])
    try:
        rows = line_support(store, context)
    finally:
        store.close()
    by_text = {r.text: r for r in rows}
    assert by_text["Read the question and compute."].support == 0  # S0's own text
    harm = by_text["HARMFUL advice."]
    assert harm.edit_id == HARM.id and harm.failed == 1 and harm.support >= 1
    tip = by_text["MULTIPLY-EVEN numbers."]
    assert (tip.edit_id, tip.support, tip.passed, tip.failed) == (TIP_A.id, 3, 1, 2)


def test_prune_proposes_the_unused_section_on_its_branch(done):
    proposal = propose_prune(done["run_dir"])
    assert [c.ref for c in proposal.candidates] == ["SKILL.md#demo/old-tips"]
    assert proposal.commit and proposal.ref == "t2s/r1/prune"
    assert proposal.removed_lines == 4
    message = _git(done["repo"], "log", "-1", "--format=%B", "t2s/r1/prune")
    assert "0 of 12 trajectories of S*" in message and "Trace2Skill-Kind: prune" in message
    text = _git(done["repo"], "show", f"t2s/r1/prune:{SKILL_PATH}/SKILL.md")
    assert "Old tips" not in text and "Tip A" in text
    assert read_prune(done["run_dir"]).commit == proposal.commit
    stage = read_manifest(done["run_dir"]).stages["prune"]  # type: ignore[union-attr]
    assert stage.status == "done" and stage.ended_at is not None
    # The run's bundle carries the new ref (and ablate's) to other clones and to pr.
    held = read_bundle(SkillRepo.open(done["repo"]), done["run_dir"] / "refs.bundle").refs
    assert held["refs/heads/t2s/r1/prune"] == proposal.commit
    kinds = {name.split("/")[4] for name in held}
    assert {"ablate", "only", "base", "result"} <= kinds


def test_prune_keeps_a_reference_the_kept_text_links_to(tmp_path):
    # Nothing was evaluated, so every section is unused: the reference's only section goes,
    # yet SKILL.md's title text (never pruned) still links the file, so the file must stay.
    linked = S0_TEXT.replace("# Demo\n", "# Demo\nSee [notes](references/notes.md).\n")
    files = {
        "SKILL.md": linked,
        "references/notes.md": "# Notes\nNever read.\n",
        "references/orphan.md": "# Orphan\nNever read either.\n",
    }
    run = make_run(tmp_path, files=files)
    proposal = propose_prune(run["run_dir"], min_trajectories=0)
    ops = {(e.file, e.op) for e in proposal.patch.edits}
    assert ("references/notes.md", "delete_file") not in ops
    assert ("references/orphan.md", "delete_file") in ops  # linked by nothing: it goes
    tree = _git(run["repo"], "ls-tree", "-r", "--name-only", "t2s/r1/prune")
    assert f"{SKILL_PATH}/references/notes.md" in tree.split()
    assert f"{SKILL_PATH}/references/orphan.md" not in tree.split()
    text = _git(run["repo"], "show", f"t2s/r1/prune:{SKILL_PATH}/SKILL.md")
    assert "references/notes.md" in text


def test_a_run_without_a_result_says_what_to_do(tmp_path):
    run = make_run(tmp_path)
    _git(run["repo"], "update-ref", "-d", "refs/heads/t2s/r1/result")
    with pytest.raises(AttributionError, match="has no result .*: finish the evolution first"):
        open_run(run["run_dir"])


def test_a_plain_rollout_run_is_said_to_be_never_evolved(tmp_path, monkeypatch):
    """`report` of a run made by `rollout` alone asked to import a refs.bundle it never had."""
    from tests.attribution_helpers import make_skill_repo
    from toolkit.runs import Manifest, update_stage

    run_dir = tmp_path / "runs" / "r0"
    run_dir.mkdir(parents=True)
    manifest = Manifest(run_id="r0", created_at="2026-12-05T00:00:00+00:00", toolkit_version="0")
    (run_dir / "manifest.json").write_text(manifest.model_dump_json())
    update_stage(run_dir, "rollout", status="done", config={"split": "train"})
    # In a skill repository, and where there is no git repository at all.
    for here in (make_skill_repo(tmp_path / "repo"), tmp_path):
        monkeypatch.chdir(here)
        out = CliRunner().invoke(main, ["report", str(run_dir)])
        assert out.exit_code == 1
        assert out.output.startswith("Error: run 'r0' was never evolved (no analyse, consolidate")
        assert "refs.bundle" not in out.output and out.output.count("\n") == 1


def test_prune_refuses_without_evidence(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(AttributionError, match="too little evidence"):
        propose_prune(run["run_dir"])


def test_a_loss_is_not_said_to_hide_broken_tasks() -> None:
    from toolkit.attribution.report import score_warning

    result = EvalResult.model_construct(n=10, passed=1)
    line = ScoreLine(split="test", n=10, s0=result, star=result, difference=-0.1,
                     ci=(-0.3, 0.0), p_value=1.0, fixed=[], broken=["q1"])  # fmt: skip
    warning = score_warning(line) or ""
    assert "breaks 1 task(s)" in warning and "the average moved -10.0 pp" in warning
    assert "hides" not in warning


def test_report_warns_about_broken_tasks_and_shows_effects(done):
    propose_prune(done["run_dir"])
    text = render_report(done["run_dir"])
    head = text.split("## Scores")[0]
    assert "Warning (all): S* breaks 3 task(s) that S0 solved" in head
    assert "(fixes 5); an average gain of +" in head and "hides them" in head
    assert "Broken by S* (3): `q0`, `q4`, `q8`" in text
    assert "Fixed by S* (5)" in text
    # Its leave-one-out CI touches 0 ([-50.0, +0.0]): not called harmful, as the app's "hurt"
    # count (CI below 0) does not count it either.
    [harm] = [ln for ln in text.splitlines() if ln.startswith(f"| `{HARM.id}` |")]
    assert "-25.0 pp [-50.0, +0.0]" in harm and "harmful" not in harm
    assert "`SKILL.md#demo/old-tips`" in text.split("## Pruning candidates")[1]
    assert "model calls" in text


def test_report_names_a_damaged_eval_file_instead_of_dropping_its_scores(done, tmp_path):
    """A corrupt line in S0's eval file made the report say there was no evaluation at all
    (while `pr` refused, naming the line): a new user's report."""
    import shutil

    run_dir = tmp_path / "r1"
    shutil.copytree(done["run_dir"], run_dir)
    for damaged in (run_dir / "evals").glob("*/*.jsonl"):  # S0's among them
        lines = damaged.read_text().splitlines(keepends=True)
        lines[3] = lines[3][:20] + "\n"
        damaged.write_text("".join(lines))
    section = render_report(run_dir).split("## Scores")[1]
    assert f"Scores left out: not an eval file: {run_dir / 'evals'}/" in section
    assert ".jsonl:4: " in section and "No evaluation of both" not in section


def test_a_torn_merge_line_is_no_support_figure(done, tmp_path):
    """With the final merge's line torn off ``merges.jsonl``, every edit showed the whole
    patch's support (8, where it was 1, 4 or 8) in `support` and the PR body."""
    import shutil

    from toolkit.repo import SkillRepo
    from toolkit.review import check_gate, load_review, render_body

    run_dir = tmp_path / "r1"
    shutil.copytree(done["run_dir"], run_dir)
    merges = run_dir / "merges.jsonl"
    merges.write_text(merges.read_text().rstrip("\n")[:-40])  # killed mid-write
    out = CliRunner().invoke(main, ["support", str(run_dir), "--repo", str(done["repo"])])
    assert out.exit_code == 1, out.output
    assert "has no line for the final patch" in out.output and out.output.count("\n") == 1
    review = load_review(run_dir, SkillRepo.open(done["repo"]).git)
    assert review.edits == [] and review.merges == {}
    assert any("no line for the final patch" in m for m in review.missing)
    assert "- consolidation:" not in render_body(review, check_gate(review))


def test_report_shows_a_no_skill_baseline_when_the_run_has_one(done, tmp_path):
    import shutil

    from toolkit.evaluate import evaluate

    run_dir = tmp_path / "r1"
    shutil.copytree(done["run_dir"], run_dir)
    assert "| No skill |" not in render_report(run_dir)
    with fake_model(agent_reply, name="attr-agent") as model:
        config = LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache")
        # The run's evaluations used the json protocol: a baseline must use it too.
        none = evaluate(None, done["suite"], "all", model, run_dir=run_dir, llm_config=config,
                        progress=False, resamples=2000,
                        agent_config=AgentConfig(protocol="json"))  # fmt: skip
    text = render_report(run_dir)
    rate = none.summary.pass_rate
    assert f"| No skill | {100 * rate.rate:.1f}% | [{100 * rate.ci.low:.1f}%, " in text
    assert "| S0 - no skill (paired) | " in text


def test_ablate_dry_run_checks_what_the_real_run_checks(done, tmp_path):
    """A dry run with the wrong --suite planned 200 rollouts the real run then refused; an
    ablation on the split the run learned from said nothing about it."""
    import shutil

    from toolkit.runs import update_stage

    run_dir = tmp_path / "r1"
    shutil.copytree(done["run_dir"], run_dir)
    args = ["ablate", str(run_dir), "--repo", str(done["repo"]), "--dry-run"]
    wrong = CliRunner().invoke(main, [*args, "--suite", "gsm8k", "--split", "test"])
    assert wrong.exit_code == 1 and "splits file is for suite 'jsonl', not 'gsm8k'" in wrong.output
    update_stage(run_dir, "rollout", status="done", config={"split": "all"})
    same = CliRunner().invoke(
        main, [*args, "--suite", "jsonl", "--data", str(done["tasks"]), "--split", "all"]
    )
    assert same.exit_code == 0, same.output
    assert "Note: the run's analyses learned from its 'all' tasks" in same.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"top": -1}, "top must be"), ({"top": 0}, "top must be"), ({"tasks": 0}, "tasks must be"),
     ({"kinds": ["loo"]}, "kinds must be some of ablate, only"), ({"kinds": []}, "kinds must")],
)  # fmt: skip
def test_ablate_refuses_settings_out_of_range_in_one_line(done, tmp_path, setting, message):
    """The CLI's bounds were missing from the API: top=-1 ablated every edit but the last
    (a slice), tasks=0 said the split had no tasks, an unknown kind 'no edit selected'."""
    import shutil

    run_dir = tmp_path / "r1"
    shutil.copytree(done["run_dir"], run_dir)
    refs = _git(done["repo"], "for-each-ref")
    with pytest.raises(AttributionError, match=message) as refused:
        ablate(run_dir, suite=done["suite"], split="all", repo=done["repo"], **setting)
    assert "\n" not in str(refused.value)
    assert _git(done["repo"], "for-each-ref") == refs  # no version was built


def test_ablate_dry_run_counts_only_the_rollouts_left(done, tmp_path):
    """A dry run of a finished ablation announced its full cost ("at most 84 rollouts")."""
    import shutil

    run_dir = tmp_path / "r1"
    shutil.copytree(done["run_dir"], run_dir)
    args = ["ablate", str(run_dir), "--repo", str(done["repo"]), "--dry-run", "--suite",
            "jsonl", "--data", str(done["tasks"]), "--split", "all", "--top", "3"]  # fmt: skip
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "cost: nothing to run: all 84 rollouts are in the run's evaluations" in out.output
    # Drop 5 finished rollouts (and one that ended on a model error runs again): 6 are left.
    path = run_dir / "evals" / "trajectories.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    failed = json.loads(lines[5])
    failed["stop_reason"] = "error"
    path.write_text("".join(lines[6:]) + json.dumps(failed) + "\n")
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "cost: at most 6 rollouts (78 of 84 are in the run's evaluations, reused)" in out.output
    assert "another agent" not in out.output
    # A rollout made by another agent (changed prompts: another trajectory id) runs again.
    other = json.loads(path.read_text().splitlines()[0])
    other["id"] = "0" * 16
    path.write_text(json.dumps(other) + "\n" + "".join(path.read_text().splitlines(True)[1:]))
    out = CliRunner().invoke(main, args)
    assert "cost: at most 7 rollouts (77 of 84" in out.output
    assert "note: 1 of them were evaluated before by another agent" in out.output


def test_cli_commands(done, tmp_path):
    runner = CliRunner()
    run = str(done["run_dir"])
    out = runner.invoke(main, ["usage", run])
    assert out.exit_code == 0, out.output
    assert "SKILL.md#demo/workflow" in out.output
    # The fixture's evaluations are on its held-out split 'all' (the ablation's split).
    assert out.output.startswith("trajectories (split 'all'): S0: 12 evaluation trajectories")
    # usage has no --delivery option: its help must not name one.
    assert "--delivery" not in runner.invoke(main, ["usage", "--help"]).output
    unused = [line for line in out.output.splitlines() if "demo/old-tips" in line]
    assert unused and all(" used 0/" in x and "pass with - / without " in x for x in unused)
    out = runner.invoke(main, ["support", run, "--json"])
    assert out.exit_code == 0 and json.loads(out.output.splitlines()[0])["line"] == 1
    out = runner.invoke(main, ["prune", run, "--dry-run"])
    assert out.exit_code == 0 and "remove SKILL.md#demo/old-tips" in out.output
    assert "caution: with system delivery" in out.stderr  # silent use is not seen
    printed = runner.invoke(main, ["report", run, "-o", "-"])
    assert printed.exit_code == 0 and printed.output.startswith("# trace2skill run `r1`")
    out = runner.invoke(main, ["report", run])
    assert out.exit_code == 0 and (done["run_dir"] / "report.md").is_file()
    # The same bytes (it ended with an extra blank line).
    assert printed.output == (done["run_dir"] / "report.md").read_text()
    out = runner.invoke(main, ["report", str(tmp_path / "nope")])
    assert out.exit_code == 1 and out.output.startswith("Error: ")
    assert "does not exist" in out.output
    out = runner.invoke(main, ["report", str(tmp_path)])
    assert out.exit_code == 1 and out.output.startswith("Error: ") and "manifest" in out.output


def test_cli_ablate_dry_run_prints_the_cost_and_writes_nothing(tmp_path):
    run = make_run(tmp_path)
    args = ["ablate", str(run["run_dir"]), "--suite", "jsonl", "--data", str(run["tasks"])]
    out = CliRunner().invoke(main, [*args, "--split", "all", "--dry-run", "--model", "fake/x"])
    assert out.exit_code == 0, out.output
    assert "on 12 task(s) of jsonl/all" in out.output
    assert "cost: at most 84 rollouts" in out.output  # (S*, S0, 3 ablate, 2 only) x 12
    assert f"skip only/{HARM.id}" in out.output
    assert not (run["run_dir"] / "ablations.jsonl").exists()
    assert not (run["run_dir"] / "splits.json").exists()


def test_cli_ablate_runs_and_prints_effects(tmp_path):
    run = make_run(tmp_path)
    with fake_model(agent_reply) as model:
        out = CliRunner().invoke(
            main,
            ["ablate", str(run["run_dir"]), "--suite", "jsonl", "--data", str(run["tasks"]),
             "--split", "all", "--edits", HARM.id, "--model", model, "--no-cache"],
        )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert f"ablate {HARM.id}  effect -25.0 pp" in out.output
    records = read_ablations(run["run_dir"])
    assert [r.kind for r in records] == ["ablate"] and isinstance(records[0], AblationRecord)


def test_cli_ablate_defaults_to_the_runs_own_agent(tmp_path):
    from toolkit.runs import update_stage

    run = make_run(tmp_path)
    update_stage(
        run["run_dir"], "rollout", status="done",
        config={"model": "fake/the-runs-model", "protocol": "code", "delivery": "progressive"},
    )  # fmt: skip
    args = ["ablate", str(run["run_dir"]), "--suite", "jsonl", "--data", str(run["tasks"])]
    out = CliRunner().invoke(main, [*args, "--split", "all", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "model fake/the-runs-model" in out.output
    # Another model would mix its figures with the run's in the report (a new-user trial
    # saw an edit's -20 pp from the 1.5B replaced by a fake model's +0 pp).
    out = CliRunner().invoke(main, [*args, "--split", "all", "--dry-run", "--model", "fake/x"])
    assert out.exit_code == 1 and "made and evaluated with fake/the-runs-model" in out.output
    same = [*args, "--split", "all", "--dry-run", "--model", "fake/the-runs-model"]
    assert CliRunner().invoke(main, same).exit_code == 0


def test_usage_table_says_so_when_no_section_was_used():
    from toolkit.attribution.report import usage_table
    from toolkit.attribution.usage import SectionUsage

    def row(version: str, ref: str, used: int) -> SectionUsage:
        return SectionUsage(
            version=version, skill_commit=version, ref=ref, file="SKILL.md", in_skill=True,
            trajectories=5 if version == "S0" else 3, used=used, reads=0, citations=used,
            tasks=[], passed_with=0, passed_without=1, rate_with=None, rate_without=0.2,
            difference=None, ci_with=None, ci_without=None,
        )  # fmt: skip

    unused = [row(v, ref, 0) for v in ("S0", "S*") for ref in ("SKILL.md#a", "SKILL.md#b")]
    (line,) = usage_table(unused)
    assert "No section was read, cited or echoed" in line and "S0: 5 trajectories, S*: 3" in line
    table = usage_table([*unused, row("S*", "SKILL.md#c", 1)])
    assert table[0].startswith("| section |") and len(table) == 2 + 3


def test_echoed_uses_count_as_use(done):
    from toolkit.trajectory import SectionUse

    versions = _versions(done["run_dir"])
    trajectories = read_run_trajectories(done["run_dir"])
    star = next(c for c, (label, _) in versions.items() if label == "S*")
    ref = "SKILL.md#demo/old-tips"
    first = next(i for i, t in enumerate(trajectories) if t.skill_commit == star)
    echo = SectionUse(step=0, kind="echoed", file="SKILL.md", section_id="demo/old-tips")
    trajectories[first] = trajectories[first].model_copy(
        update={"section_uses": [*trajectories[first].section_uses, echo]}
    )
    rows = {r.ref: r for r in section_usage(trajectories, versions) if r.version == "S*"}
    assert (rows[ref].used, rows[ref].echoes, rows[ref].reads, rows[ref].citations) == (1, 1, 0, 0)
    assert rows[ref].tasks == [trajectories[first].task_id]


def test_ablate_a_users_jsonl_run_without_naming_its_suite(tmp_path):
    """A trial's finding: `ablate RUN` on an evolve run of a user's task file stopped with
    "suite 'jsonl' has no option(s) data_dir" (the task file was opened as a data folder):
    the run's own task file and scoring rule, as its rollouts recorded them, are used."""
    from tests.user_run import rehearsal_options, rehearsed_jsonl_run

    root = rehearsed_jsonl_run(tmp_path, "u")
    out = CliRunner().invoke(
        main,
        ["ablate", str(root / "runs" / "u"), "--repo", str(root), "--top", "1", "--tasks", "2",
         *rehearsal_options(tmp_path)[2:]],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "of jsonl/test (seed 0, model fake/rehearsal)" in out.output
    assert "only" in out.output and "results:" in out.output


def test_report_lists_the_ablated_edits_most_supported_first(done):
    """A researcher's trial: a support-2 edit was listed above a support-3 one (the table
    followed the final patch's order). Here the patch's edits are put least supported first."""
    from toolkit.attribution.report import edit_table

    context, store = open_run(done["run_dir"])
    store.close()
    edits = sorted(context.final_patch.edits, key=lambda e: context.support[e.id].support)
    context.final_patch.edits[:] = edits
    table = edit_table(context, read_ablations(done["run_dir"]))
    supports = [int(r.split(" | ")[2]) for r in table if r.startswith("| `")]
    assert len(set(supports)) >= 2  # the fixture's edits differ in support
    assert supports == sorted(supports, reverse=True)
