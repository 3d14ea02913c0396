"""evolve --create (the paper's Creation setting) through the fake model, in a temporary repo."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.evolve_helpers import DRAFT_REPLY
from tests.repo_helpers import git, user_state, wikitq_repo
from tests.test_evolve import config_for, kill_at, llm, method, train_ids
from toolkit.cli import main
from toolkit.draft import SYSTEM_MARK, DraftError, create_base
from toolkit.errors import RepoError
from toolkit.evolve import EvolveConfig, Rates, estimate, evolve, plan
from toolkit.llm import fake_model
from toolkit.repo import SkillRepo, parse_trailers
from toolkit.runs import read_manifest
from toolkit.tasks import get_suite

NEW = Path("skills") / "table-qa"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user repository with a README and the wikitq skill, committed (no table-qa yet)."""
    return wikitq_repo(tmp_path / "repo", readme="my skills\n")


def creating(repo: Path, run_id: str = "r1", **overrides: Any) -> EvolveConfig:
    return config_for(repo, run_id, **{"skill": repo / NEW, "create": True, **overrides})


def drafts(model: Any) -> list[Any]:
    """The requests the fake model got as the author of a draft."""
    return [r for r in model.requests if str(r.messages[0]["content"]).startswith(SYSTEM_MARK)]


def test_create_commits_the_draft_as_the_base_and_evolves_it(repo: Path, tmp_path: Path) -> None:
    before = user_state(repo)
    head = git(repo, "rev-parse", "HEAD")
    run_dir = repo.parent / "runs" / "r1"
    with method("evolve-create") as model:
        lines: list[str] = []
        summary = evolve(
            creating(repo, model=model), llm_config=llm(tmp_path), progress=False,
            echo=lines.append,
        )  # fmt: skip
        [asked] = drafts(model)
    assert lines[1].endswith("base") and summary.created
    # The draft is S0: on t2s/r1/base on top of the user's HEAD, and in the run folder.
    base_md = git(repo, "show", f"t2s/r1/base:{NEW}/SKILL.md")
    assert base_md == (run_dir / "draft" / "SKILL.md").read_text()
    assert "name: table-qa" in base_md and DRAFT_REPLY["description"] in base_md
    assert "## Pitfalls" in base_md and "- Check the column names first." in base_md
    assert git(repo, "rev-parse", "t2s/r1/base^") == head
    assert git(repo, "diff", "--name-only", "HEAD", "t2s/r1/base").strip() == f"{NEW}/SKILL.md"
    message = git(repo, "log", "-1", "--format=%B", "t2s/r1/base")
    assert "Creation" in message
    trailers = parse_trailers(message)
    assert trailers is not None and (trailers.kind, trailers.model) == ("base", model)
    info = json.loads((run_dir / "draft" / "draft.json").read_text())
    assert info["model"] == model and info["split"] == "train"
    assert set(info["examples"]) <= set(train_ids()) and len(info["examples"]) == 5
    # The author saw questions of the evolve tasks only, no held-out one.
    prompt = "\n".join(str(m["content"]) for m in asked.messages)
    suite = get_suite("wikitq")
    assert all(t.question in prompt for t in suite.load_ids(info["examples"]))
    assert not any(t.question in prompt for t in suite.load("test", limit=4, seed=0).tasks)
    # The method ran on the draft: the analysts' lessons went into its Pitfalls section.
    assert summary.analyses["kept"] == 2 and summary.result.passed > summary.s0.passed
    result_md = git(repo, "show", f"t2s/r1/result:{NEW}/SKILL.md")
    assert result_md.count(" before answering.") == 2 and result_md.startswith(base_md[:200])
    assert summary.stages["base"].calls == 1 and summary.stages["base"].units == 1
    # The user's branch, index and files are as they were: no skills/table-qa on disk.
    assert user_state(repo) == before and not (repo / NEW).exists()
    # Summary, report and pull request body say the skill was created.
    from toolkit.attribution.report import render_report
    from toolkit.cli.evolve import summary_lines
    from toolkit.review import check_gate, load_review, render_body, render_title

    printed = "\n".join(summary_lines(summary, run_dir))
    assert f"Creation: S0 is {model}'s draft of {NEW.as_posix()}" in printed
    assert "Creation mode: no skill was written by hand" in render_report(run_dir, repo=repo)
    review = load_review(run_dir, SkillRepo.open(repo).git)
    body = render_body(review, check_gate(review))
    assert f"**{NEW.as_posix()}** created by trace2skill run `r1`" in body
    assert "Creation mode:" in body and model in body
    assert render_title(review).startswith("trace2skill: create table-qa (run r1)")
    from toolkit.index import build_index, connect

    build_index(run_dir.parent)
    with connect(run_dir.parent) as con:
        row = con.execute("SELECT s0_drafted, memory_baseline FROM runs").fetchall()
    assert row == [(True, False)]


def test_a_resume_never_drafts_again(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import toolkit.evolve as evolve_module

    real = evolve_module._STAGE_FUNCS["rollout"]
    with method("evolve-create-resume") as model:
        config = creating(repo, model=model)
        kill_at(monkeypatch, "rollout")
        with pytest.raises(KeyboardInterrupt):
            evolve(config, llm_config=llm(tmp_path), progress=False)
        assert len(drafts(model)) == 1 and "t2s/r1/base" in git(repo, "branch", "--list", "t2s/*")
        # The resume's estimate has no draft left; a new run's has one.
        left = {s.stage: s.calls for s in plan(config, llm(tmp_path), resume=True).stages}
        assert left["base"] == 0 and left["rollout"] > 0
        monkeypatch.setitem(evolve_module._STAGE_FUNCS, "rollout", real)
        # No response cache (llm() has none): a second draft would be a second request.
        summary = evolve(config, llm_config=llm(tmp_path), resume=True, progress=False)
        assert len(drafts(model)) == 1 and summary.created
    # A base stage entered again with its ref there (killed between commit and record)
    # keeps the base and restores the run folder's copy from it, asking no model.
    (config.run_dir / "draft" / "SKILL.md").unlink()
    store = SkillRepo.open(repo)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("toolkit.draft.draft_skill", lambda *a, **k: pytest.fail("drafted"))
        commit, draft = create_base(
            store, "r1", repo / NEW, config.run_dir, get_suite("wikitq"),
            llm_config=llm(tmp_path), model="fake/none", split="train", examples=5, seed=0,
            limit=6, timestamp=0,
        )  # fmt: skip
    assert (commit, draft) == (git(repo, "rev-parse", "t2s/r1/base").strip(), None)
    assert (config.run_dir / "draft" / "SKILL.md").read_text().startswith("---\nname: table-qa")
    manifest = read_manifest(config.run_dir)
    assert manifest is not None and manifest.stages["evolve"].config["create"] is True


def test_bad_creation_requests_are_refused_and_leave_nothing(repo: Path, tmp_path: Path) -> None:
    runs = repo.parent / "runs"
    before = user_state(repo)
    (repo / "skills" / "untracked").mkdir()
    (repo / "skills" / "untracked" / "notes.md").write_text("mine\n")
    dirty = user_state(repo)
    cases: list[tuple[Path, type[Exception], str]] = [
        (repo / "skills" / "wikitq-table-qa", RepoError, "exists already: evolve it as it is"),
        (repo / "skills" / "untracked", RepoError, "exists already"),
        (repo / "skills" / "Table_QA", DraftError, "cannot create a skill named 'Table_QA'"),
    ]
    with method("evolve-create-refused") as model:
        for folder, error, message in cases:
            with pytest.raises(error, match=message):
                evolve(creating(repo, skill=folder, model=model), llm_config=llm(tmp_path),
                       progress=False)  # fmt: skip
        assert model.calls == 0  # refused before the author was asked
    # A reply that fails validation twice: one clear error, no run folder, no refs.
    bad = {**DRAFT_REPLY, "description": "Tables --- and their questions"}
    with fake_model(lambda m: bad if drafts_messages(m) else pytest.fail("no author")) as model:
        with pytest.raises(DraftError, match="does not validate after one repair try") as failed:
            evolve(creating(repo, model=model), llm_config=llm(tmp_path), progress=False)
        assert model.calls == 2 and "\n" not in str(failed.value)
    assert not (runs / "r1").exists() and git(repo, "for-each-ref", "refs/heads/t2s") == ""
    assert user_state(repo) == dirty
    shutil.rmtree(repo / "skills" / "untracked")
    assert user_state(repo) == before


def drafts_messages(messages: list[dict[str, Any]]) -> bool:
    return str(messages[0].get("content", "")).startswith(SYSTEM_MARK)


def test_cli_create_with_the_rehearsal_model(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = repo.parent / "runs"
    new = Path("more-skills") / "table-qa"  # no folder of it exists: its parent neither
    monkeypatch.chdir(repo)
    base = ["evolve", "--create", str(new), "--suite", "wikitq", "--runs-dir", str(runs),
            "--model", "fake/rehearsal", "--evolve-limit", "2", "--test-limit", "1",
            "--error-analyst", "single", "--run-id", "c1", "--no-progress",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    estimated = CliRunner().invoke(main, [*base, "--estimate"])
    assert estimated.exit_code == 0, estimated.output
    [line] = [x for x in estimated.output.splitlines() if x.strip().startswith("base ")]
    assert line.split()[1:5] == ["1", "units", "1", "calls"] and not runs.exists()
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 0, result.output
    assert "Creation: S0 is fake/rehearsal's draft of more-skills/table-qa" in result.output
    assert "name: table-qa" in git(repo, "show", f"t2s/c1/base:{new}/SKILL.md")
    assert not (repo / new.parent).exists()
    # A resume from elsewhere finds the repository where the run started (the folder is in
    # git only); it may not change --create's settings; an existing folder is one line.
    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(
        main, ["evolve", "--resume", "--run-id", "c1", "--runs-dir", str(runs), "--no-progress"]
    )
    assert again.exit_code == 0, again.output
    assert "Creation: S0 is fake/rehearsal's draft" in again.output
    refused = CliRunner().invoke(
        main, ["evolve", "--resume", "--run-id", "c1", "--runs-dir", str(runs),
               "--draft-examples", "3"],
    )  # fmt: skip
    assert refused.exit_code == 1 and "--draft-examples (the run has 5)" in refused.output
    for args, message in (
        (["evolve", "--create", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq"],
         "exists already"),
        (["evolve", str(repo / "skills" / "wikitq-table-qa"), "--suite", "wikitq",
          "--draft-examples", "3"], "--draft-examples goes with --create"),
    ):  # fmt: skip
        out = CliRunner().invoke(main, [*args, "--runs-dir", str(runs), "--model", "fake/echo"])
        assert out.exit_code == 1 and message in out.output, out.output
        assert out.output.count("\n") == 1


def test_the_estimate_counts_the_draft() -> None:
    config = EvolveConfig(run_id="r", skill=Path("skills/new"), suite="wikitq", create=True)
    rates = Rates(steps_per_task=2, tokens_per_call=100, seconds_per_call=6,
                  unit_seconds={"task": 60.0})  # fmt: skip
    est = estimate(config, evolve_tasks=10, test_tasks=4, rates=rates, concurrency=1)
    first = est.stages[0]
    assert (first.stage, first.units, first.calls, first.tokens) == ("base", 1, 1, 100)
    assert first.minutes == pytest.approx(6 / 60)  # a call, not an agent task's 60 s
    done = estimate(config, 10, 4, rates, 1, finished={"base": math.inf})
    assert done.stages[0].calls == 0
    deepening = estimate(config.model_copy(update={"create": False}), 10, 4, rates, 1)
    assert "base" not in {s.stage for s in deepening.stages}
    assert est.calls == deepening.calls + 1
