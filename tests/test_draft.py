"""Creation's draft (toolkit.draft, ``trace2skill skill draft``) through the fake author model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.evolve_helpers import DRAFT_REPLY
from toolkit.cli import main
from toolkit.draft import (
    SYSTEM_MARK,
    DraftError,
    DraftReply,
    draft_issues,
    draft_skill,
    render_skill_md,
)
from toolkit.llm import LLMConfig, fake_model
from toolkit.llm.fake import FaultKind
from toolkit.skill import Skill, validate_dir, validate_skill
from toolkit.tasks import TaskError, get_suite

#: A reply whose SKILL.md does not validate: '---' in a front matter value.
BAD_REPLY = {**DRAFT_REPLY, "description": "Tables --- and their questions"}


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    """A JSONL suite whose golds are words found nowhere else, so a leak shows."""
    rows = [
        {"id": f"q{i}", "question": f"Which code word does crate {i} carry?",
         "answer": f"GOLDWORD{i}", "split": "train" if i < 8 else "test"}
        for i in range(12)
    ]  # fmt: skip
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def gateway(tmp_path: Path, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "model": "fake/echo",
        "cache": False,
        "cache_dir": tmp_path / "cache",
        "max_retries": 0,
        "calls_log": tmp_path / "llm_calls.jsonl",
    }
    return LLMConfig(**{**values, **overrides})


def _prompt(model: Any, index: int = 0) -> str:
    return "\n".join(str(m["content"]) for m in model.requests[index].messages)


def test_the_draft_holds_what_the_author_wrote_and_validates(
    task_file: Path, tmp_path: Path
) -> None:
    suite = get_suite("jsonl", path=task_file)
    with fake_model(lambda _messages: DRAFT_REPLY) as model:
        draft = draft_skill(
            "table-qa", suite, llm_config=gateway(tmp_path), model=model, examples=3
        )
        assert model.calls == 1
        prompt = _prompt(model)
    skill = Skill.from_files("table-qa", {"SKILL.md": draft.text})
    assert not [i for i in validate_skill(skill) if i.severity == "error"]
    assert skill.metadata["name"] == "table-qa"
    assert skill.metadata["description"] == DRAFT_REPLY["description"]
    ids = [s.id for s in skill.doc.headed_sections]
    assert ids == ["table-qa", "table-qa/workflow", "table-qa/pitfalls"]
    assert "1. Load table.csv with pandas.\n2. Filter the rows." in draft.text
    assert "- Check the column names first." in draft.text
    assert (draft.model, draft.suite, draft.split) == (model, "jsonl", "train")
    assert not draft.repaired and draft.calls == 1
    # Three seeded questions of the train split, as the agent sees them; no gold anywhere,
    # and no held-out question.
    tasks = {t.id: t for t in suite.load("all").tasks}
    assert len(draft.examples) == 3 and all(tasks[i].split == "train" for i in draft.examples)
    for task_id in draft.examples:
        assert tasks[task_id].question in prompt
    assert "GOLDWORD" not in prompt
    assert not any(t.question in prompt for t in tasks.values() if t.split == "test")
    assert prompt.startswith(SYSTEM_MARK) and suite.describe() in prompt
    # The call is logged like every other model call.
    logged = [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]
    assert [c["model"] for c in logged] == [model]


def test_a_cached_draft_is_not_asked_again(task_file: Path, tmp_path: Path) -> None:
    suite = get_suite("jsonl", path=task_file)
    config = gateway(tmp_path, cache=True)
    with fake_model(lambda _messages: DRAFT_REPLY) as model:
        first = draft_skill("table-qa", suite, llm_config=config, model=model)
        again = draft_skill("table-qa", suite, llm_config=config, model=model)
        assert model.calls == 1
    assert first.text == again.text


@pytest.mark.parametrize("first", [BAD_REPLY, FaultKind.TRUNCATED_JSON])
def test_an_invalid_or_cut_off_draft_gets_one_repair_try(
    task_file: Path, tmp_path: Path, first: Any
) -> None:
    suite = get_suite("jsonl", path=task_file)
    with fake_model([first, DRAFT_REPLY]) as model:
        draft = draft_skill("table-qa", suite, llm_config=gateway(tmp_path), model=model)
        assert model.calls == 2 and draft.repaired
        repair = _prompt(model, 1)
    assert "name: table-qa" in draft.text
    if first is BAD_REPLY:  # the validation's own words are shown
        bad = render_skill_md("table-qa", DraftReply.model_validate(BAD_REPLY))
        errors = [i for i in draft_issues("table-qa", bad) if i.severity == "error"]
        assert errors and all(i.message in repair for i in errors)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ([BAD_REPLY, BAD_REPLY], "does not validate after one repair try"),
        # A reply the gateway had to repair gets no second try when it does not validate.
        ([FaultKind.TRUNCATED_JSON, BAD_REPLY], "does not validate after one repair try"),
        ([FaultKind.TRUNCATED_JSON] * 2, "no valid draft of table-qa after one repair try"),
    ],
)
def test_a_draft_that_fails_twice_is_one_clear_error(
    task_file: Path, tmp_path: Path, script: list[Any], message: str
) -> None:
    suite = get_suite("jsonl", path=task_file)
    with fake_model([*script, DRAFT_REPLY]) as model:
        with pytest.raises(DraftError, match=message) as failed:
            draft_skill("table-qa", suite, llm_config=gateway(tmp_path), model=model)
        assert model.calls == 2  # never a third
    assert "\n" not in str(failed.value) and "nothing was written" in str(failed.value)
    if script[-1] is FaultKind.TRUNCATED_JSON:
        assert "max_tokens" in str(failed.value)


def test_rendering_quotes_the_description_and_closes_an_open_fence() -> None:
    reply = DraftReply.model_validate(
        {
            "description": 'Use it: "tables"\nwith # marks',
            "title": "## Table QA",
            "overview": "",
            "sections": [
                {"heading": "Methods", "body": "```python\nimport pandas as pd"},
                {"heading": "Pitfalls", "body": "- Check the header.\n\n\n\n- And the units."},
            ],
        }
    )
    text = render_skill_md("table-qa", reply)
    skill = Skill.from_files("table-qa", {"SKILL.md": text})
    assert skill.metadata["description"] == 'Use it: "tables" with # marks'
    assert [s.id for s in skill.doc.headed_sections] == [
        "table-qa", "table-qa/methods", "table-qa/pitfalls"
    ]  # fmt: skip
    assert "import pandas as pd\n```\n" in text and "header.\n\n- And" in text
    assert not validate_skill(skill)


def test_a_bad_name_or_an_empty_split_is_refused_before_any_call(
    task_file: Path, tmp_path: Path
) -> None:
    suite = get_suite("jsonl", path=task_file)
    with fake_model(lambda _messages: DRAFT_REPLY) as model:
        with pytest.raises(DraftError, match="cannot create a skill named 'Table_QA'"):
            draft_skill("Table_QA", suite, llm_config=gateway(tmp_path), model=model)
        with pytest.raises(TaskError, match="has no split 'dev'"):
            draft_skill("table-qa", suite, llm_config=gateway(tmp_path), model=model, split="dev")
        held_out = tmp_path / "test-only.jsonl"
        held_out.write_text(
            "".join(line for line in task_file.read_text().splitlines(True) if '"test"' in line)
        )
        only_test = get_suite("jsonl", path=held_out)
        with pytest.raises(DraftError, match="no task in split 'train'"):
            draft_skill("table-qa", only_test, llm_config=gateway(tmp_path), model=model)
        assert model.calls == 0


# ---------------------------------------------------------------------------------------------
# trace2skill skill draft
# ---------------------------------------------------------------------------------------------


def draft_cli(folder: Path, task_file: Path, model: str, *extra: str) -> Any:
    return CliRunner().invoke(
        main,
        ["skill", "draft", str(folder), "--suite", "jsonl", "--data", str(task_file),
         "--model", model, "--no-cache", "--examples", "2", *extra],
    )  # fmt: skip


def test_cli_draft_writes_a_valid_skill_and_never_overwrites_one(
    task_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "skills" / "table-qa"
    with fake_model(lambda _messages: DRAFT_REPLY) as model:
        result = draft_cli(folder, task_file, model)
        assert result.exit_code == 0, result.output
        assert f"drafted {folder / 'SKILL.md'}" in result.output and model.calls == 1
        assert not [i for i in validate_dir(folder) if i.severity == "error"]
        written = (folder / "SKILL.md").read_text()
        assert DRAFT_REPLY["description"] in written
        # An existing folder is refused before any model call; --force replaces SKILL.md.
        (folder / "SKILL.md").write_text(written + "\nMy own note.\n")
        refused = draft_cli(folder, task_file, model)
        assert refused.exit_code == 1 and "exists already" in refused.output
        assert "My own note." in (folder / "SKILL.md").read_text() and model.calls == 1
        forced = draft_cli(folder, task_file, model, "--force")
        assert forced.exit_code == 0, forced.output
        assert (folder / "SKILL.md").read_text() == written and model.calls == 2


def test_cli_draft_refusals_are_one_line_and_write_nothing(task_file: Path, tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    with fake_model(lambda _messages: BAD_REPLY) as model:
        for folder, extra, message in (
            (skills / "Bad_Name", (), "cannot create a skill named 'Bad_Name'"),
            (skills / "table-qa", ("--split", "test"), "--split test: the draft would be"),
            (skills / "table-qa", (), "does not validate after one repair try"),
        ):
            result = draft_cli(folder, task_file, model, *extra)
            assert result.exit_code == 1, result.output
            assert result.output.startswith("Error: ") and message in result.output
            assert result.output.count("\n") == 1 and "Traceback" not in result.output
            assert not skills.exists()
        assert model.calls == 2  # only the last one asked (and repaired once)
