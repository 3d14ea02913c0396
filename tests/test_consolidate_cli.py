from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.consolidate_helpers import RUN, SKILL_REL, add_leaves, keep_all, leaf, lesson, make_run
from tests.repo_helpers import git
from toolkit.cli import main
from toolkit.llm import fake_model
from toolkit.runs import update_stage


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRACE2SKILL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_consolidate_then_provenance(env: Path) -> None:
    repo, run_dir = make_run(env)
    a = lesson("- Strip thousands separators.")
    add_leaves(repo, run_dir, [leaf(a), leaf(a, why="again"), leaf(lesson("- B."))])
    runner = CliRunner()
    with fake_model(keep_all) as model:
        result = runner.invoke(
            main,
            ["consolidate", str(run_dir), "--model", model, "--merge-batch", "2", "--json",
             "--no-progress"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["leaves"] == 3 and summary["model"] == str(model)
    # A resume goes on with the model that merged: another one is refused, none is fine.
    again = ["consolidate", str(run_dir), "--resume", "--json", "--no-progress"]
    other = runner.invoke(main, [*again, "--model", "fake/other"])
    assert other.exit_code == 1 and f"was consolidated with {model}" in other.output
    result_before = git(repo.root, "rev-parse", f"t2s/{RUN}/result")
    merges_before = (run_dir / "merges.jsonl").read_text()
    # ... and with its --merge-batch 2: the default 5 planned a new tree of all 3 leaves and
    # replaced S* (a trial's finding). Given differently, it is refused.
    same = runner.invoke(main, again)
    assert same.exit_code == 0 and json.loads(same.output)["model"] == str(model)
    assert git(repo.root, "rev-parse", f"t2s/{RUN}/result") == result_before
    assert (run_dir / "merges.jsonl").read_text() == merges_before
    assert json.loads(same.output)["groups"] == summary["groups"] == 3
    batch = runner.invoke(main, [*again, "--merge-batch", "3"])
    assert batch.exit_code == 1 and "was consolidated with --merge-batch 2" in batch.output
    assert git(repo.root, "rev-parse", f"t2s/{RUN}/result") == result_before
    assert (run_dir / "merges.jsonl").exists()
    target = repo.root / SKILL_REL / "SKILL.md"
    shown = runner.invoke(
        main,
        ["provenance", f"{target}", "--ref", f"t2s/{RUN}/result", "--run-dir", str(run_dir),
         "--json"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    lines = json.loads(shown.output)
    (line,) = [x for x in lines if x["text"] == "- Strip thousands separators."]
    assert line["support"] == 2 and line["trajectories"] == ["t0", "t1"]
    assert line["edit_id"] == str(a.id) and line["merge"]
    text = runner.invoke(
        main, ["provenance", f"{target}:14", "--ref", f"t2s/{RUN}/result", "--run-dir",
               str(run_dir)],
    )  # fmt: skip
    assert text.exit_code == 0 and "support" in text.output


def test_consolidate_merges_with_the_analysts_model_by_default(env: Path) -> None:
    """The analyse stage records its author model as `model`; consolidate read `author_model`
    and fell back to the agent's (or the embedded) model."""
    repo, run_dir = make_run(env)
    add_leaves(repo, run_dir, [leaf(lesson("- A.")), leaf(lesson("- B."))])
    with fake_model(keep_all) as model:
        update_stage(run_dir, "rollout", status="done", config={"model": "fake/agent"})
        update_stage(
            run_dir,
            "analyse",
            status="done",
            config={"repo": str(repo.root), "skill_path": SKILL_REL, "run": RUN, "model": model},
        )
        result = CliRunner().invoke(main, ["consolidate", str(run_dir), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"] == str(model)


def test_consolidate_errors_are_one_line(env: Path) -> None:
    repo, run_dir = make_run(env)
    result = CliRunner().invoke(main, ["consolidate", str(run_dir), "--model", "fake/echo"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: run 'r1' has no patches to consolidate")
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["consolidate", str(env / "nope")])
    assert missing.exit_code == 1 and "is not a run folder" in missing.output
    (env / "empty").mkdir()
    empty = CliRunner().invoke(main, ["consolidate", str(env / "empty")])
    assert empty.output == f"Error: {env / 'empty'} is not a run folder (no manifest.json)\n"


def test_a_merge_model_whose_reply_was_not_used_is_named(env: Path) -> None:
    """fake/echo's replies are no merge: the groups fell back to the union, and the summary
    read as a success ("merged 0, union 1, failed 0") without saying so."""
    repo, run_dir = make_run(env)
    add_leaves(repo, run_dir, [leaf(lesson("- A.")), leaf(lesson("- B."))])
    result = CliRunner().invoke(
        main, ["consolidate", str(run_dir), "--model", "fake/echo", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    note = next(line for line in result.output.splitlines() if line.startswith("note"))
    assert "the merge model's reply was not used in 1 group(s) (first: " in note
    assert f"see {run_dir}/merges.jsonl" in note


def test_consolidate_says_when_the_response_cache_answered(env: Path) -> None:
    """A consolidation replayed from the response cache printed its calls with 0 tokens and
    no word of why (a rehearsal's or a redone run's merges cost no model time)."""
    runner = CliRunner()
    outputs = []
    for name in ("first", "second"):  # the same leaves, so the same merge prompts
        repo, run_dir = make_run(env / name)
        add_leaves(repo, run_dir, [leaf(lesson("- A.")), leaf(lesson("- B."))])
        with fake_model(keep_all, name="cache-note"):
            result = runner.invoke(
                main, ["consolidate", str(run_dir), "--model", "fake/cache-note", "--no-progress"]
            )
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "response cache" not in outputs[0]
    assert " 1 (0/0 tokens); 1 from the response cache\n" in outputs[1], outputs[1]
    (record,) = [json.loads(x) for x in (run_dir / "merges.jsonl").read_text().splitlines()]
    assert record["cached"] == record["attempts"] == 1
