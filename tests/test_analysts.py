"""The analyse stage end to end with the scripted fake model: a real git repository holding
the skill, real gsm8k tasks (vendored slice), the real sandbox for the agentic analyst."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from toolkit.analysts import (
    AnalyseConfig,
    AnalyseError,
    AnalyseSummary,
    AnalysisRecord,
    analysis_id,
    check_patch,
    leaked_values,
    mask_values,
    restates_skill,
    run_analyses,
)
from toolkit.analysts.replies import PatchReply
from toolkit.analysts.snippets import (
    broken_blocks,
    code_problem,
    shadowed_helpers,
    unfenced_code_lines,
)
from toolkit.analysts.specific import (
    data_names,
    question_names,
    question_phrases,
    quoted_texts,
    task_literals,
    task_names,
    task_text,
)
from toolkit.analysts.stage import failed_on_model_error
from toolkit.cli import main
from toolkit.errors import ToolkitError, ToolkitNotice
from toolkit.llm import FaultKind, LLMConfig, fake_model
from toolkit.patch import Patch, apply_patch
from toolkit.repo import SkillRepo, parse_trailers
from toolkit.runs import read_manifest, update_stage
from toolkit.skill import load_skill
from toolkit.tasks import Task, TaskFile, get_suite
from toolkit.trajectory import Action, Step, Trajectory, Verdict, append_jsonl, read_jsonl
from toolkit.trajectory import skill_commit as tree_id

ROOT = Path(__file__).resolve().parents[1]
TASKS = get_suite("gsm8k").load("test", limit=3, seed=0).tasks  # answers 540, 163, 26
SECTION = "gsm8k-math/pitfalls"


def git(root: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_DATE": "@1700000000 +0000", "GIT_COMMITTER_DATE": "@1700000000 +0000"}
    import os

    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True,
        env={**os.environ, **env},
    ).stdout  # fmt: skip


def make_run(tmp_path: Path, passed: list[bool]) -> tuple[Path, Path]:
    """A user repository with skills/gsm8k-math committed, and a run folder with one
    trajectory per task (pass/fail as given) made with that skill."""
    repo = tmp_path / "repo"
    (repo / "skills").mkdir(parents=True)
    shutil.copytree(ROOT / "skills" / "gsm8k-math", repo / "skills" / "gsm8k-math")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "T")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "skill")
    skill_dir = repo / "skills" / "gsm8k-math"
    commit = tree_id(load_skill(skill_dir))
    run_dir = tmp_path / "runs" / "r1"
    records = []
    for task, ok in zip(TASKS, passed, strict=False):
        answer = task.answers[0] if ok else "7"
        records.append(
            Trajectory(
                id=f"traj-{task.id}",
                task_id=task.id,
                suite="gsm8k",
                split="test",
                question=task.question,
                skill_name="gsm8k-math",
                skill_commit=commit,
                model="fake/agent",
                delivery="system",
                steps=[
                    Step(
                        index=0,
                        thought="guess",
                        action=Action(tool="submit", args={"answer": answer}),
                    )
                ],
                final_answer=answer,
                verdict=Verdict(passed=ok, gold=list(task.answers), predicted=[answer]),
                stop_reason="submitted",
            )
        )
    append_jsonl(run_dir / "trajectories.jsonl", records)
    update_stage(run_dir, "rollout", status="done", config={"skill_path": str(skill_dir)})
    return repo, run_dir


def patch_reply(content: str = "- Re-read the question and check units before submitting.",
                **edit: Any) -> dict[str, Any]:  # fmt: skip
    base = {
        "file": "SKILL.md",
        "op": "append_to_section",
        "target_section": SECTION,
        "target_text": "",
        "old_text": "",
        "content": content,
    }
    return {
        "reasoning": "the agent guessed instead of computing",
        "edits": [{**base, **edit}],
        "changelog_entries": ["Pitfalls: check units before submitting"],
    }


def error_reply(**patch: Any) -> dict[str, Any]:
    return {"diagnosis": "guessed", "failed_step": 0, "patch": patch or patch_reply()}


def gold_of(messages: list[dict[str, Any]]) -> str:
    text = messages[1]["content"]
    return next(t.answers[0] for t in TASKS if t.question[:40] in text)


def agentic_script(reach_pass: bool = True, report: Any = None):  # type: ignore[no-untyped-def]
    """Checks a wrong answer, computes in python, checks the gold (PASS), finishes, reports."""

    def script(messages: list[dict[str, Any]]) -> Any:
        last = messages[-1]["content"]
        if "write the report" in last:
            return report if report is not None else error_reply()
        step = sum(m["role"] == "assistant" for m in messages)
        if "PASS" in last and "FAIL" not in last:
            return {"thought": "done", "tool": "finish", "args": {"code": "", "answer": ""}}
        if step == 0:
            return {
                "thought": "check",
                "tool": "evaluate_output",
                "args": {"code": "", "answer": "7"},
            }
        if step == 1:
            return {"thought": "compute", "tool": "python",
                    "args": {"code": "print(6 * 7)", "answer": ""}}  # fmt: skip
        answer = gold_of(messages) if reach_pass else "8"
        return {
            "thought": "retry",
            "tool": "evaluate_output",
            "args": {"code": "", "answer": answer},
        }

    return script


def llm(tmp_path: Path) -> LLMConfig:
    return LLMConfig(model="fake/echo", cache=False, cache_dir=tmp_path / "cache", max_retries=0)


def analyse_agentic(run_dir: Path, model: str, tmp_path: Path, max_turns: int) -> AnalyseSummary:
    """The analyses of ``run_dir`` by ``model`` (scripted) with ``max_turns`` analyst steps."""
    config = AnalyseConfig(model=model, max_turns=max_turns)
    return run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False)


def records_of(run_dir: Path) -> list[AnalysisRecord]:
    return read_jsonl(run_dir / "analyses.jsonl", AnalysisRecord).records


# ------------------------------------------------------------------------------- pure parts


def test_leak_filter_matches_whole_values_only() -> None:
    assert leaked_values("the total is 540 metres", ["540"]) == ["540"]
    assert leaked_values("the total is 540.0", ["540"]) == ["540"]
    assert leaked_values("use 5400 or 54", ["540"]) == []
    assert leaked_values("answer 1,540", ["1540"]) == ["1540"]
    assert leaked_values("step 7 of 9", ["7"]) == []  # one digit: evidence of nothing
    assert leaked_values("The capital is Paris.", ["paris"]) == ["paris"]
    assert leaked_values("comparison", ["paris"]) == []
    assert mask_values("expected 540 got 7", ["540"]) == "expected <gold> got 7"


def test_check_patch_keeps_applied_edits_and_records_the_rest() -> None:
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    reply = PatchReply.model_validate(
        {
            "reasoning": "r",
            "edits": [
                patch_reply()["edits"][0],
                {**patch_reply()["edits"][0], "op": "replace_in_section", "old_text": "no such"},
                {**patch_reply("- The answer here was 540.")["edits"][0]},
            ],
            "changelog_entries": ["c"],
        }
    )
    checked = check_patch(reply, skill, ["540"], "a1")
    assert checked.patch is not None and len(checked.patch.edits) == 1 and not checked.repaired
    assert {(d.index, d.reason) for d in checked.dropped} == {
        (1, "anchor-missing"),
        (2, "answer-leak"),
    }
    assert checked.patch.sources == [checked.patch.id] and checked.patch.support == 1
    assert apply_patch(skill, checked.patch).clean
    assert list(checked.changes) == ["SKILL.md"]


def test_an_edit_that_restates_the_skill_is_dropped() -> None:
    """Seen with the embedded 1.5B: workflow steps 3-5 appended again as steps 6-8."""
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    restated = (
        "6. List every given quantity as a named Python variable, with its unit in a comment.\n"
        "7. Do the arithmetic in Python, never in your head."
    )
    wrapped = "- Read the last sentence first: write down exactly what is asked and in which unit"
    assert restates_skill(restated, skill) and restates_skill(wrapped, skill)
    new_line = restated + "\n8. Round money to cents only at the end."
    assert not restates_skill(new_line, skill)  # one new line keeps the edit
    assert not restates_skill("Check units.", skill)  # too short to say anything
    checked = check_patch(PatchReply.model_validate(patch_reply(restated)), skill, [], "a1")
    assert checked.patch is None and checked.reason is not None
    assert checked.reason.startswith("already-in-skill: every line of its content")
    kept = check_patch(PatchReply.model_validate(patch_reply(new_line)), skill, [], "a1")
    assert kept.patch is not None and not kept.dropped
    # Only edits that add text are checked: a replacement may reuse the skill's own words.
    old = '"How many are left" needs the subtraction at the end.'
    reworded = patch_reply(restated, op="replace_in_section", old_text=old)
    made = check_patch(PatchReply.model_validate(reworded), skill, [], "a1")
    assert made.patch is not None and not made.dropped


def test_quotes_of_the_tasks_data_are_task_specific(tmp_path: Path) -> None:
    """Seen with the embedded 1.5B on WikiTQ: lessons quoting one table's cells."""
    table = "Year,Award,Result\n2006,Best Actor: Drama,Nominated\n2007,Saturn Award,Won\n"
    task = Task(id="t1", suite="wikitq", split="train", question="which award?", answers=["x"],
                files=[TaskFile(path="table.csv", text=table)])  # fmt: skip
    data = task_text(task)
    skill_texts = ["Drop rows like 'Total' before counting."]
    line = "- Count the rows where the Award is 'Best Actor: Drama' (\"saturn award\" too)."
    assert task_literals(line, data, skill_texts) == ["Best Actor: Drama", "saturn award"]
    # Apostrophes are no quotes; a quote the skill uses, a short one or one with no letter
    # names no value of this task; the question is not searched.
    assert quoted_texts("the agent's code doesn't print 'Year' or '2006' or 'N/A'") == ["Year"]
    assert task_literals("Skip 'Total' rows; 'Won' means a win.", data, skill_texts) == []
    assert task_literals("Questions like 'which award' need a max.", data, skill_texts) == []
    assert task_literals("Filter on 'Award'.", "", skill_texts) == []  # no data: no check
    # Code spans quote too (the real run: "The `Country` and `Metropolitan area` columns");
    # a span of code is in no table.
    spans = "The `Saturn Award` rows; check `df.columns` first."
    assert task_literals(spans, data, skill_texts) == ["Saturn Award"]
    # ...and the quotes inside a span of code are searched too (the real single-call
    # analyst kept "`sel = df[(df['Subject'] == 'Encyclicals')]`").
    code = "- `sel = df[(df['Award'] == 'Saturn Award') & (df['Year'] > 0)]`"
    assert quoted_texts(code)[1:] == ["Award", "Saturn Award", "Year"]
    assert task_literals(code, data, skill_texts) == ["Award", "Saturn Award", "Year"]
    source = tmp_path / "t.csv"
    source.write_text(table)
    from_disk = Task(id="t2", suite="wikitq", split="train", question="q", answers=["x"],
                     files=[TaskFile(path="table.csv", source=str(source)),
                            TaskFile(path="chart.png", data=b"Saturn Award")])  # fmt: skip
    assert task_text(from_disk) == table
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    reply = PatchReply.model_validate(patch_reply(line))
    checked = check_patch(reply, skill, [], "a1", data)
    assert checked.patch is None and checked.reason is not None
    assert checked.reason == (
        "task-specific: it quotes 'Best Actor: Drama', 'saturn award' from this task's data"
    )
    assert check_patch(reply, skill, [], "a1").patch is not None  # without data: kept


def test_names_of_the_tasks_data_are_task_specific() -> None:
    """The real WikiTQ run's first kept lesson compared ``bo_grahn_date``: the table's
    athlete Bo Grahn, unquoted, in code."""
    table = "Name,Country,Date\nBo Grahn,Sweden,1969-06-11\nJanis Lusis,Soviet Union,1968\n"
    assert data_names(table) == {" bo grahn ", " janis lusis ", " soviet union "}
    code = "if current_date == bo_grahn_date:\n    return False"
    assert task_names(code, table, ["Filter rows, then count."]) == ["bo grahn"]
    assert task_names("Names like BO GRAHN are in the Name column.", table, []) == ["bo grahn"]
    # One capitalised word, words in lower case, names the skill has, or no data: no name.
    assert task_names("Check the Country and Date columns of Sweden.", table, []) == []
    assert task_names("A country like Soviet Union has a new name now.", table,
                      ["Old names such as Soviet Union stay."]) == []  # fmt: skip
    assert task_names("bo grahn", "", []) == []
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    reply = PatchReply.model_validate(patch_reply("- Compare bo_grahn_date with the row's date."))
    checked = check_patch(reply, skill, [], "a1", table)
    assert checked.reason == "task-specific: it names 'bo grahn' from this task's data"


def test_names_the_question_asks_about_are_task_specific() -> None:
    """The real WikiTQ run kept code filtering on 'Galina Chistyakova' (the question's
    athlete, in no cell of the table) and a step about "the Fighting Irish"."""
    question = "what was galina chistyakova's last competition?"
    code = "```python\ndf = df[df['Name'].str.contains('Galina Chistyakova')]\n```"
    assert question_names(code, question, []) == ["Galina Chistyakova"]
    asked = "how many points did the fighting irish score in october 1946?"
    step = "We need the row where the opponent is the Fighting Irish."
    assert question_names(step, asked, []) == ["Fighting Irish"]
    # Common capitalised words end a run; a phrase the question lacks, or the skill has, or
    # lower-case words are no name; no question, no check.
    assert question_names("The Player column may be missing.", "who is the player?", []) == []
    assert question_names("### Look Before Filtering", asked, []) == []
    assert question_names("Fighting Irish rows", asked, ["the Fighting Irish example"]) == []
    assert question_names("the fighting irish", asked, []) == []
    assert question_names("Fighting Irish", "", []) == []
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    reply = PatchReply.model_validate(patch_reply(code))
    checked = check_patch(reply, skill, [], "a1", question=question)
    assert checked.reason == (
        "task-specific: it names 'Galina Chistyakova' from this task's question"
    )
    assert check_patch(reply, skill, [], "a1").patch is not None  # without the question: kept


def test_a_lesson_that_copies_the_question_is_task_specific() -> None:
    """The real WikiTQ evolve's single-call analyst kept "call `submit` with the name of the
    team that beat mercury in their only 2OT game" (its question, lower case: no name)."""
    question = "who did the mercury beat in their only 2ot game?"
    lesson = (
        "- The output lists 2 players and then `2`, so call `submit` with the name of the "
        "team that beat mercury in their only 2OT game."
    )
    assert question_phrases(lesson, question, []) == ["in their only 2ot game"]
    # The shape of a question type, in common or the skill's words, is no subject.
    how_many = "how many times did the team win the title?"
    generic = "- For 'how many times did the ...' questions, count the matching rows."
    assert question_phrases(generic, how_many, []) == []
    assert question_phrases("- how many times did the team win", how_many, []) == [
        "how many times did the team win"
    ]
    assert question_phrases("- how many times did the team win", how_many, ["team win"]) == []
    assert question_phrases("- their only 2ot", question, []) == []  # three words only
    assert question_phrases(lesson, "", []) == []
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    checked = check_patch(
        PatchReply.model_validate(patch_reply(lesson)), skill, [], "a1", question=question
    )
    assert checked.reason == (
        "task-specific: it copies 'in their only 2ot game' from this task's question"
    )


def test_code_that_does_not_parse_or_redefines_submit_is_dropped() -> None:
    """The real WikiTQ run's 1.5B analyst appended a block cut off mid-call and a
    ``def submit(self, answer): print(...)`` an agent would copy over the harness's own."""
    cut = "```python\nsel = df[df['g'] > 10]\nprint(sel[['Year', 'Goals']].to_str(\n```"
    assert broken_blocks(cut) == ["sel = df[df['g'] > 10]"]
    fine = "```python\nif 'Goals' in df.columns:\n    print(df['Goals'])\n```"
    output = "```\n| Year | Goals |\n```"  # an untagged fence of output is not parsed
    prose = "Call submit(answer) once; do not print it."  # no fence: no code to parse
    assert broken_blocks(fine + "\n" + output + "\n" + prose) == []
    assert broken_blocks("```bash\nls -la (\n```") == []  # another language
    shadow = "```python\ndef submit(self, answer):\n    print(f'Submitting answer: {answer}')\n```"
    assert shadowed_helpers(shadow) == ["submit"]
    assert shadowed_helpers("```py\nread_skill = print\nfrom x import submit\n```") == [
        "read_skill",
        "submit",
    ]
    assert shadowed_helpers("```python\nsubmit(total)\nread_skill('a/b')\n```") == []
    # The real run's was bare text, no fence; prose naming submit(...) defines nothing.
    assert shadowed_helpers("def submit(self, answer):  # Replace\n    print(answer)") == ["submit"]
    assert shadowed_helpers("Call submit(x) when submit == done is printed.") == []
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    for content, reason in ((cut, "broken-code"), (shadow, "shadows-harness")):
        checked = check_patch(PatchReply.model_validate(patch_reply(content)), skill, [], "a1")
        assert checked.patch is None and checked.reason is not None
        assert checked.reason.startswith(reason + ": ")
    kept = check_patch(PatchReply.model_validate(patch_reply(fine)), skill, [], "a1")
    assert kept.patch is not None


def test_code_appended_outside_a_fence_is_dropped() -> None:
    """The real run's S* opened with bare code under its title (an analyst's unfenced
    lesson, merged as it was): as prose it teaches nothing and breaks the page."""
    bare = (
        "df['Goals'] = df['Goals'].map(num)\nThe column may be missing.\n"
        "df = df[~df['Player'].str.contains('total', case=False)]"
    )
    assert unfenced_code_lines(bare) == [
        "df['Goals'] = df['Goals'].map(num)",
        "df = df[~df['Player'].str.contains('total', case=False)]",
    ]
    prose = (
        "- Check units.\n- total\nCall `num()` on `df.columns` first.\n```python\nx = 1\ny = 2\n```"
    )
    assert unfenced_code_lines(prose) == []
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    checked = check_patch(PatchReply.model_validate(patch_reply(bare)), skill, [], "a1")
    assert checked.reason is not None and checked.reason.startswith("unfenced-code: 2 lines")
    # Only appended content reads as prose: a replace inside a fence may be bare code.
    assert code_problem(bare, "replace_in_section") is None
    # An insert whose made-up anchor sends it to the end of its section is appended content
    # too (the real run's bare code came in this way).
    insert = {**patch_reply(bare)["edits"][0], "op": "insert_after", "target_text": "- Made up."}
    reply = PatchReply.model_validate(
        {"reasoning": "r", "edits": [insert], "changelog_entries": ["c"]}
    )
    moved = check_patch(reply, skill, [], "a1")
    assert moved.patch is None and moved.reason is not None
    assert moved.reason.startswith("unfenced-code: 2 lines")


def test_insert_with_a_made_up_anchor_is_appended_to_its_section() -> None:
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    made_up = {"op": "insert_after", "target_text": "- A line the model made up."}
    lost = {**made_up, "target_section": "gsm8k-math/no-such-section"}
    reply = PatchReply.model_validate(
        {
            "reasoning": "r",
            "edits": [{**patch_reply("- Check units.")["edits"][0], **made_up},
                      {**patch_reply("- Re-read.")["edits"][0], **lost}],
            "changelog_entries": ["c"],
        }
    )  # fmt: skip
    checked = check_patch(reply, skill, [], "a1")
    assert checked.patch is not None
    [edit] = checked.patch.edits
    assert edit.op == "append_to_section" and edit.target_section == SECTION
    assert [(r.index, r.reason) for r in checked.repaired] == [(0, "anchor-missing")]
    assert "appended to the section instead" in checked.repaired[0].message
    assert [d.index for d in checked.dropped] == [1]  # its section is missing too: dropped
    text = checked.changes["SKILL.md"].decode()
    assert (
        text.index("- Check units.") > text.index("# ") and apply_patch(skill, checked.patch).clean
    )


def test_a_copy_of_the_trajectory_is_no_lesson() -> None:
    """The real WikiTQ run's 1.5B appended its prompt's step list to the skill, three edits of
    '--- step 1 ---\nthought: \naction: python {...'."""
    from toolkit.analysts.prompts import copies_trajectory

    copied = '\n--- step 1 ---\nthought: \naction: python {"code": "print(df)"}'
    assert copies_trajectory(copied) and copies_trajectory("VERDICT: FAIL (wrong)")
    assert not copies_trajectory("- End with a FINAL ANSWER: line; check each step's output.")
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    checked = check_patch(PatchReply.model_validate(patch_reply(copied)), skill, [], "a1")
    assert checked.patch is None and checked.reason is not None
    assert checked.reason.startswith("copies-trajectory: it copies the analysed trajectory")


def test_an_anchor_copied_from_another_section_goes_to_that_section() -> None:
    """The real WikiTQ run: a replace of the worked example's line, aimed at the loading
    section, was rejected and the lesson lost."""
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    line = "Do the arithmetic in Python, never in your head"  # in the workflow section
    reply = PatchReply.model_validate(
        patch_reply("Do the arithmetic in Python, step by step", op="replace_in_section",
                    old_text=line)  # target_section: the pitfalls section
    )  # fmt: skip
    checked = check_patch(reply, skill, [], "a1")
    assert checked.patch is not None
    [edit] = checked.patch.edits
    assert edit.op == "replace_in_section" and edit.target_section == "gsm8k-math/workflow"
    assert "section 'gsm8k-math/workflow' holds it" in checked.repaired[0].message
    assert "step by step" in checked.changes["SKILL.md"].decode()
    # Text in no section, or in several, is not guessed at: the replace is dropped.
    nowhere = PatchReply.model_validate(
        patch_reply("x", op="replace_in_section", old_text="A line nobody wrote.")
    )
    assert check_patch(nowhere, skill, [], "a1").patch is None


def test_a_section_named_by_its_heading_gets_its_id() -> None:
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    heading = next(s.heading for s in skill.doc.headed_sections if s.id == SECTION)
    reply = PatchReply.model_validate(
        {
            "reasoning": "r",
            "edits": [{**patch_reply("- Check units.")["edits"][0],
                       "target_section": f"## {heading.upper()}"}],
            "changelog_entries": ["c"],
        }
    )  # fmt: skip
    checked = check_patch(reply, skill, [], "a1")
    assert checked.patch is not None and checked.patch.edits[0].target_section == SECTION
    assert [r.reason for r in checked.repaired] == ["section-missing"]


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"file": "../../etc/passwd"}, "patch-rejected: path-escape"),
        ({"file": "scripts/run.py", "op": "replace_in_section", "old_text": "x"}, "patch-rejected"),
        ({"op": "insert_after", "target_text": ""}, "no-valid-edit"),
    ],
)
def test_check_patch_refuses_edits_outside_the_skill(edit: dict[str, Any], reason: str) -> None:
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    reply = PatchReply.model_validate(
        {**patch_reply(), "edits": [{**patch_reply()["edits"][0], **edit}]}
    )
    checked = check_patch(reply, skill, [], "a1")
    assert checked.patch is None and checked.reason is not None
    assert checked.reason.startswith(reason), checked.reason


# ------------------------------------------------------------------------------- the stage


def test_single_call_error_analyst_keeps_patches_on_branches(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path, [False, False, True])
    with fake_model([error_reply(), error_reply(**patch_reply("- The result is 163."))]) as model:
        summary = run_analyses(
            run_dir, AnalyseConfig(analyst="error-single", model=model, concurrency=1),
            llm_config=llm(tmp_path), progress=False,
        )  # fmt: skip
    assert (summary.trajectories, summary.kept, summary.dropped) == (2, 1, 1)
    assert summary.reasons == {"answer-leak": 1} and summary.skipped == 1
    kept, dropped = records_of(run_dir)
    assert kept.status == "kept" and kept.analyst == "error-single" and kept.fix_passed is None
    assert kept.outcome == "fail" and kept.model == str(model) and kept.turns == 1
    assert dropped.status == "dropped" and dropped.reason.startswith("answer-leak")
    assert dropped.patch_id is None and dropped.dropped_edits[0].reason == "answer-leak"
    # The leaked value is never repeated in what the record says about the drop (ids and
    # timestamps are hashes and numbers that may contain the digits by chance).
    said = [dropped.reason, *(d.message for d in dropped.dropped_edits)]
    assert not any("163" in text for text in said)
    patch = Patch.model_validate_json((run_dir / "patches" / f"{kept.patch_id}.json").read_text())
    assert patch.id == kept.patch_id and patch.sources == [patch.id] and patch.support == 1
    assert sorted(p.name for p in (run_dir / "patches").iterdir()) == [f"{kept.patch_id}.json"]
    # The branch: parent = base, the skill file patched, provenance in the trailers.
    store = SkillRepo.open(repo)
    refs = store.run_refs("r1")
    branch = refs[f"t2s/r1/patch/{kept.patch_id}"]
    assert summary.branches == {kept.patch_id: branch}
    assert git(repo, "rev-parse", f"{branch}^") == git(repo, "rev-parse", "t2s/r1/base")
    trailers = parse_trailers(store.messages([branch])[0])
    assert trailers is not None
    assert (trailers.kind, trailers.patch, trailers.trajectory, trailers.outcome) == (
        "patch", kept.patch_id, kept.trajectory_id, "fail",
    )  # fmt: skip
    assert (trailers.analyst, trailers.model, trailers.support) == ("error-single", str(model), 1)
    text = git(repo, "show", f"{branch}:skills/gsm8k-math/SKILL.md")
    assert "check units before submitting" in text
    assert git(repo, "status", "--porcelain") == ""  # the user's tree is untouched
    stage = read_manifest(run_dir).stages["analyse"]  # type: ignore[union-attr]
    assert stage.status == "done" and stage.counts["kept"] == 1
    assert stage.config["skill_path"] == "skills/gsm8k-math" and stage.config["repo"] == str(repo)


def test_the_stage_checks_lessons_against_the_analysed_tasks_files(tmp_path: Path) -> None:
    """The single-call analysts need no task, but the stage loads it for the data check."""
    from toolkit.tasks.gsm8k import GSM8KSuite

    class WithTables(GSM8KSuite):
        def load_ids(self, ids: Any) -> list[Task]:
            table = TaskFile(path="table.csv", text="Name,Eggs\nJanet Duck,16\n")
            return [t.model_copy(update={"files": [table]}) for t in super().load_ids(ids)]

    repo, run_dir = make_run(tmp_path, [False, False, True])
    specific = patch_reply("- Count the eggs of 'Janet Duck' first.")
    with fake_model([error_reply(), error_reply(**specific)]) as model:
        summary = run_analyses(
            run_dir, AnalyseConfig(analyst="error-single", model=model, concurrency=1),
            llm_config=llm(tmp_path), progress=False, suite=WithTables(),
        )  # fmt: skip
    assert (summary.kept, summary.dropped) == (1, 1)
    assert summary.reasons == {"task-specific": 1}
    dropped = next(r for r in records_of(run_dir) if r.status == "dropped")
    assert dropped.reason == "task-specific: it quotes 'Janet Duck' from this task's data"


def test_agentic_analyst_is_kept_only_when_its_fix_passes(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [False])
    with fake_model(agentic_script(reach_pass=True)) as model:
        summary = analyse_agentic(run_dir, model, tmp_path, 5)
    assert summary.kept == 1
    (record,) = records_of(run_dir)
    assert record.analyst == "error-agentic" and record.fix_passed is True
    assert record.turns == 5  # wrong check, python, gold check, finish, report
    # The verifier's FAIL never showed the gold answer to the analyst.
    requests = model.requests
    assert all("540" not in m["content"] for r in requests for m in r.messages[:2])
    observations = [m["content"] for m in requests[-1].messages if m["role"] == "user"][1:]
    assert observations[0].startswith("Observation:\nFAIL") and "42" in observations[1]
    assert "PASS" in observations[2]
    # A step reserves less of a small context than the report does.
    from toolkit.analysts.agentic import STEP_MAX_TOKENS

    limits = [r.params.get("max_tokens") for r in requests]
    assert limits == [STEP_MAX_TOKENS] * 4 + [AnalyseConfig().max_tokens]


def test_agentic_analyst_dropped_when_fix_never_passes(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [False])
    with fake_model(agentic_script(reach_pass=False)) as model:
        summary = analyse_agentic(run_dir, model, tmp_path, 4)
    (record,) = records_of(run_dir)
    assert summary.kept == 0 and record.status == "dropped" and record.fix_passed is False
    assert record.reason.startswith("fix-not-passed") and record.turns == 4
    assert not (run_dir / "patches").exists()
    assert "write the report" not in model.requests[-1].messages[-1]["content"]


def test_an_agentic_analysis_that_outgrows_the_context_is_no_model_error(tmp_path: Path) -> None:
    """Seen in the real WikiTQ evolve: the analyst's fifth step overflowed the 8k context and
    was recorded as a model error (fix the model settings, says that), which every resume
    analysed again to the same overflow."""
    from tests.test_agent_code_protocol import context_full

    _repo, run_dir = make_run(tmp_path, [False])
    steps = agentic_script(reach_pass=False)

    def script(messages: list[dict[str, Any]]) -> Any:
        if sum(m["role"] == "assistant" for m in messages) == 2:
            return context_full()
        return steps(messages)

    with fake_model(script) as model:
        summary = analyse_agentic(run_dir, model, tmp_path, 6)
    (record,) = records_of(run_dir)
    assert summary.kept == 0 and record.status == "dropped"
    assert record.reason.startswith("context-full: ") and "context window" in record.reason
    assert not failed_on_model_error(record.model_dump(mode="json"))  # a resume keeps it


def test_an_agentic_analysis_elides_old_observations_to_stay_within_the_context(
    tmp_path: Path,
) -> None:
    """The real WikiTQ evolve lost 7 of its first 17 analyses to an 8k context that the steps
    outgrew: old observations are elided and the step asked again, so the fix can still pass."""
    from tests.test_agent_code_protocol import context_full
    from toolkit.analysts.agentic import ELIDED

    _repo, run_dir = make_run(tmp_path, [False])
    steps = agentic_script(reach_pass=True)

    def script(messages: list[dict[str, Any]]) -> Any:
        whole = [m for m in messages if m["content"].startswith("Observation:\n")]
        return context_full() if len(whole) > 2 else steps(messages)

    with fake_model(script) as model:
        summary = analyse_agentic(run_dir, model, tmp_path, 5)
    (record,) = records_of(run_dir)
    assert summary.kept == 1 and record.fix_passed is True
    assert record.turns == 5  # the step asked again is the same turn
    final = [m["content"] for m in model.requests[-1].messages if m["role"] == "user"]
    assert final.count(ELIDED) == 1 and "PASS" in final[-2]  # the first FAIL went, PASS stayed


def test_an_agentic_analyst_that_repeats_itself_is_told_then_stopped(tmp_path: Path) -> None:
    """In the real WikiTQ evolve the 1.5B analyst repeated one step to max_turns (8 calls,
    ~3 minutes each analysis): the first repeat is answered with a note, not run again; the
    second stops the analysis."""
    _repo, run_dir = make_run(tmp_path, [False])
    same = {"thought": "check", "tool": "evaluate_output", "args": {"code": "", "answer": "7"}}
    with fake_model(lambda messages: same) as model:
        analyse_agentic(run_dir, model, tmp_path, 8)
    (record,) = records_of(run_dir)
    assert record.status == "dropped" and record.turns == 3
    assert record.reason.startswith("fix-not-passed") and "repeating" in record.reason
    observations = [m["content"] for m in model.requests[-1].messages if m["role"] == "user"]
    assert observations[1].startswith("Observation:\nFAIL")
    assert "FAIL again: you checked this same answer at step 0" in observations[2]


def test_a_repeated_passing_check_ends_the_analysis_as_finish_would(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [False])

    def script(messages: list[dict[str, Any]]) -> Any:
        if "write the report" in messages[-1]["content"]:
            return error_reply()
        answer = gold_of(messages)
        return {
            "thought": "check",
            "tool": "evaluate_output",
            "args": {"code": "", "answer": answer},
        }

    with fake_model(script) as model:
        summary = analyse_agentic(run_dir, model, tmp_path, 8)
    (record,) = records_of(run_dir)
    assert summary.kept == 1 and record.fix_passed is True
    assert record.turns == 3  # check (PASS), the same check again (ends), report


def test_elide_observations_keeps_the_latest_and_the_steps() -> None:
    from toolkit.analysts.agentic import ELIDED, elide_observations

    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    for i in range(3):
        messages += [
            {"role": "assistant", "content": f"step {i}"},
            {"role": "user", "content": f"Observation:\nout {i}"},
        ]
    assert elide_observations(messages, 2) == 1
    assert [m["content"] for m in messages[3::2]] == [ELIDED, "Observation:\nout 1",
                                                       "Observation:\nout 2"]  # fmt: skip
    assert elide_observations(messages, 2) == 0  # nothing more at this level
    assert elide_observations(messages, 0) == 2
    assert [m["content"] for m in messages[2::2]] == ["step 0", "step 1", "step 2"]


def test_bad_replies_are_recorded_not_raised(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [False, False, False])
    script = [
        FaultKind.TRUNCATED_JSON, FaultKind.TRUNCATED_JSON,  # invalid twice: repair fails
        {"diagnosis": "x"},  # valid JSON, not the schema...
        "not json at all",  # ...and the repair round is no better
        error_reply(**patch_reply(file="references/nope.md")),  # a file that does not exist
    ]  # fmt: skip
    with fake_model(script) as model:
        summary = run_analyses(
            run_dir, AnalyseConfig(analyst="error-single", model=model, concurrency=1),
            llm_config=llm(tmp_path), progress=False,
        )  # fmt: skip
    reasons = [r.reason.split(":")[0] for r in records_of(run_dir)]
    assert reasons == ["invalid-reply", "invalid-reply", "patch-rejected"]
    assert summary.kept == 0 and summary.dropped == 3
    # An invalid reply still cost its tokens (they were counted as 0).
    assert all(r.tokens_in > 0 and r.tokens_out > 0 for r in records_of(run_dir))


def test_success_analyst_and_resume_redoes_nothing(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [True, True, False])
    reply = {
        "solution_path": "computed it",
        "lessons": ["compute in python"],
        "patch": patch_reply(),
    }
    with fake_model(lambda _m: reply) as model:
        config = AnalyseConfig(analyst="success", model=model, limit=1)
        first = run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False)
        assert first.kept == 1 and model.calls == 1
        with pytest.raises(ToolkitError, match="already analysed"):
            run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False)
        before = (run_dir / "analyses.jsonl").read_bytes()
        again = run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False, resume=True)
        assert model.calls == 1 and again.resumed == 1 and again.ran == 0
        assert (run_dir / "analyses.jsonl").read_bytes() == before
        more = run_analyses(
            run_dir, config.model_copy(update={"limit": None}), llm_config=llm(tmp_path),
            progress=False, resume=True,
        )  # fmt: skip
    assert model.calls == 2 and (more.resumed, more.ran, more.kept) == (1, 1, 2)
    (record, _) = records_of(run_dir)
    assert record.analyst == "success" and record.outcome == "pass"
    s0 = read_manifest(run_dir).stages["analyse"].config["skill_commit"]  # type: ignore[union-attr]
    assert record.id == analysis_id(record.trajectory_id, "success", str(model), s0, 0)


def test_resume_commits_kept_patches_whose_branch_is_missing(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path, [False])
    with fake_model(lambda _m: error_reply()) as model:
        config = AnalyseConfig(analyst="error-single", model=model)
        summary = run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False)
        (pid,) = summary.patch_ids
        git(repo, "update-ref", "-d", f"refs/heads/t2s/r1/patch/{pid}")
        again = run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False, resume=True)
    assert model.calls == 1 and again.branches == summary.branches


def test_a_second_run_folder_of_the_same_name_is_refused(tmp_path: Path) -> None:
    """Two run folders named r1 analysed into one set of refs: the first's resume then failed
    on a patch ref whose file it did not hold (a new user's report)."""
    repo, run_dir = make_run(tmp_path, [False, True])
    config = AnalyseConfig(analyst="error-single", concurrency=1)
    with fake_model(lambda _m: error_reply()) as model:
        config = config.model_copy(update={"model": model})
        run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False)
        other = tmp_path / "elsewhere" / "r1"  # the same rollouts, a fresh folder
        other.mkdir(parents=True)
        shutil.copy(run_dir / "trajectories.jsonl", other / "trajectories.jsonl")
        skill_dir = repo / "skills" / "gsm8k-math"
        update_stage(other, "rollout", status="done", config={"skill_path": str(skill_dir)})
        with pytest.raises(ToolkitError, match="already has patch refs .* another run folder"):
            run_analyses(other, config, llm_config=llm(tmp_path), progress=False)
        # The first folder resumes as before.
        again = run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False, resume=True)
    assert again.kept == 1


def test_no_failures_for_the_error_analyst_is_one_clear_error(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [True, True])
    with pytest.raises(ToolkitError, match="no failed trajectories.*--analyst success"):
        run_analyses(run_dir, AnalyseConfig(model="fake/echo"), progress=False)
    assert not (run_dir / "analyses.jsonl").exists()


def test_trajectories_without_a_suite_are_refused_up_front_for_the_agentic_analyst(
    tmp_path: Path,
) -> None:
    """Imported without --suite, every failure was dropped as task-unknown after the run
    started, with exit 0 (a new user's report)."""
    _repo, run_dir = make_run(tmp_path, [False, True])
    path = run_dir / "trajectories.jsonl"
    path.write_text(path.read_text().replace('"suite":"gsm8k"', '"suite":""'))
    with pytest.raises(ToolkitError, match="1 failed trajectories name no task suite"):
        run_analyses(run_dir, AnalyseConfig(model="fake/echo"), progress=False)
    assert not (run_dir / "analyses.jsonl").exists()
    # Given the suite now, the tasks are found (the reply is invalid, not task-unknown).
    summary = run_analyses(
        run_dir, AnalyseConfig(model="fake/echo"), progress=False, suite=get_suite("gsm8k"),
        llm_config=llm(tmp_path),
    )  # fmt: skip
    assert "task-unknown" not in summary.reasons and summary.dropped == 1


def test_cli_analyse(tmp_path: Path) -> None:
    _repo, run_dir = make_run(tmp_path, [False, True])
    with fake_model(lambda _m: error_reply()) as model:
        result = CliRunner().invoke(
            main,
            ["analyse", str(run_dir), "--analyst", "error-single", "--author-model", model,
             "--no-progress", "--json"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["kept"] == 1 and summary["skipped"] == 1
    result = CliRunner().invoke(main, ["analyse", str(tmp_path / "nope")])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_a_zero_limit_is_refused_before_the_run_is_touched(tmp_path: Path) -> None:
    """--limit 0 once recorded an empty analyse stage that then refused every later run."""
    out = CliRunner().invoke(main, ["analyse", str(tmp_path), "--limit", "0"])
    assert out.exit_code == 2 and "0 is not in the range x>=1" in out.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        AnalyseConfig(limit=0)


def test_the_agents_server_is_reused_and_model_errors_are_redone_on_resume(
    tmp_path: Path,
) -> None:
    """Found by a new-user trial with a self-hosted server: analyse sent the agent's model to
    the provider's public endpoint (the run's --api-base was not reused), every analysis was
    dropped on a model error, and --resume kept those drops."""
    _repo, run_dir = make_run(tmp_path, [False, False])
    script = [FaultKind.AUTH, FaultKind.AUTH, error_reply(), error_reply()]
    with fake_model(script) as model:
        stages = read_manifest(run_dir).stages  # type: ignore[union-attr]
        rollout = stages["rollout"].config
        server = "http://127.0.0.1:9/v1"
        update_stage(run_dir, "rollout", config={**rollout, "model": model, "api_base": server})
        config = AnalyseConfig(analyst="error-single", model=model, concurrency=1)
        # Every analysis failed on the model: an error (it exited 0 with nothing kept), with
        # the drops recorded so that --resume redoes them.
        with pytest.raises(AnalyseError, match="failed on every one of the 2 analyses.*--resume"):
            run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False)
        assert {r.reason.split(":")[0] for r in records_of(run_dir)} == {"model-error"}
        recorded = read_manifest(run_dir).stages["analyse"].config  # type: ignore[union-attr]
        assert recorded["api_base"] == server  # the run's server, not the provider's
        with pytest.warns(ToolkitNotice, match="analysing 2 trajectories again"):
            again = run_analyses(
                run_dir, config, llm_config=llm(tmp_path), progress=False, resume=True
            )
    assert again.kept == 2 and model.calls == 4
    assert [r.status for r in records_of(run_dir)] == ["kept", "kept"]


def test_imported_trajectories_with_no_model_are_analysed_by_the_configured_one(
    tmp_path: Path,
) -> None:
    """A docs audit: an import that named no model is 'imported', and analyse called a model
    of that name (every analysis a model error, exit 0)."""
    _repo, run_dir = make_run(tmp_path, [False])
    path = run_dir / "trajectories.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "model": "imported"}) + "\n" for r in lines))
    with fake_model([error_reply()]) as model:
        settings = llm(tmp_path).model_copy(update={"model": model})
        config = AnalyseConfig(analyst="error-single", concurrency=1)
        summary = run_analyses(run_dir, config, llm_config=settings, progress=False)
    assert summary.model == model and summary.kept == 1


def test_a_rerun_replayed_from_the_cache_says_so(tmp_path: Path) -> None:
    """A new-user trial: analysing the same trajectories again printed "in 0 / out 0" tokens
    without a word: every call had been answered from the response cache."""
    repo, run_dir = make_run(tmp_path, [False, False])
    again = tmp_path / "runs" / "r2"  # the same rollouts in a fresh run folder
    again.mkdir(parents=True)
    shutil.copy(run_dir / "trajectories.jsonl", again / "trajectories.jsonl")
    skill_dir = repo / "skills" / "gsm8k-math"
    update_stage(again, "rollout", status="done", config={"skill_path": str(skill_dir)})
    args = ["--analyst", "error-single", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    with fake_model(lambda _m: error_reply(), name="replayed-analyst") as model:
        first = CliRunner().invoke(main, ["analyse", str(run_dir), "--author-model", model, *args])
        second = CliRunner().invoke(main, ["analyse", str(again), "--author-model", model, *args])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    tokens = [
        next(line for line in out.output.splitlines() if line.startswith("tokens"))
        for out in (first, second)
    ]
    assert "replayed" not in tokens[0] and "in 0 / out 0" not in tokens[0]
    assert tokens[1].endswith(
        "in 0 / out 0; all 2 model calls replayed from the response cache (no tokens spent)"
    ), tokens


def test_a_consolidated_run_takes_no_new_analyses(tmp_path: Path) -> None:
    """A researcher's trial: `analyse --resume --analyst ...` on a consolidated run added leaf
    patches that S* never merged, and the run still read as finished."""
    from toolkit.consolidate import ConsolidateConfig, run_consolidation

    _repo, run_dir = make_run(tmp_path, [True, True, False])
    reply = {"solution_path": "computed it", "lessons": ["compute in python"],
             "patch": patch_reply()}  # fmt: skip
    with fake_model(lambda _m: reply) as model:
        config = AnalyseConfig(analyst="success", model=model, limit=1)
        assert run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False).kept == 1
        run_consolidation(
            run_dir,
            ConsolidateConfig(author_model=model, strategy="git", progress=False),
            llm_config=llm(tmp_path),
        )
        before = (run_dir / "analyses.jsonl").read_bytes()
        # Nothing new: a resume still goes through.
        run_analyses(run_dir, config, llm_config=llm(tmp_path), progress=False, resume=True)
        with pytest.raises(AnalyseError, match=r"already consolidated .* 1 success analyses"):
            run_analyses(
                run_dir, config.model_copy(update={"limit": None}), llm_config=llm(tmp_path),
                progress=False, resume=True,
            )  # fmt: skip
    assert (run_dir / "analyses.jsonl").read_bytes() == before
