"""Importing trajectories from other harnesses: good lines in, bad lines reported."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.rollout import read_manifest
from toolkit.trajectory import TrajectoryError, import_trajectories, read_trajectories

DOC = Path(__file__).resolve().parents[1] / "docs" / "trajectory-import.md"


def chat(answer: str = "480", code: str = "print(8 * 5 * 12)") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Solve it."},
        {"role": "user", "content": "How much does Mark make a week?"},
        {
            "role": "assistant",
            "content": "Weekly pay is hours times rate.",
            "cited_sections": ["gsm8k-math/workflow"],
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "python", "arguments": json.dumps({"code": code})},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "read_skill_file", "arguments": {"section": "Pitfalls"}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "## Pitfalls ..."},
        {"role": "tool", "tool_call_id": "c1", "content": "480"},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_good_lines_imported_bad_lines_reported(tmp_path: Path) -> None:
    good = {
        "task_id": "gsm8k-test-893",
        "messages": chat(),
        "outcome": {"passed": True},
        "model": "openai/gpt-4o-mini",
        "skill_name": "gsm8k-math",
        "tokens_in": 120,
    }
    lines = [
        good,
        "{not json",
        {"task_id": "t2", "messages": chat(), "outcome": {"passed": "maybe"}},
        {"task_id": "t3", "messages": [], "outcome": {"passed": False}},
        {"task_id": "t4", "messages": chat(), "outcome": {"answer": "480"}},
        {"task_id": "t5", "messages": chat(), "outcome": {"passed": False}, "colour": "red"},
        {"task_id": "t6", "messages": [{"role": "robot", "content": "x"}], "outcome": {}},
        {**good, "task_id": "gsm8k-test-564", "outcome": {"passed": False, "score": 0.25}},
        # Only the user's message: no step to learn from (it was imported as a 0-step pass).
        {"task_id": "t9", "messages": chat()[:2], "outcome": {"passed": True}},
        # No answer: its harness did not say why it stopped (it read as max_turns).
        {**good, "task_id": "t10", "messages": chat()[:3], "outcome": {"passed": False}},
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    report = import_trajectories(source, tmp_path / "run")
    assert report.imported == 3 and report.already_present == 0
    errors = {e.line: e.message for e in report.errors}
    assert set(errors) == {2, 3, 4, 5, 6, 7, 9}
    assert "the chat has no assistant message" in errors[9]
    assert "not valid JSON" in errors[2]
    assert errors[3].startswith("outcome.passed")
    assert errors[4].startswith("messages")
    assert "outcome.passed is missing" in errors[5]
    assert errors[6].startswith("colour") and "Extra inputs" in errors[6]
    assert "role" in errors[7]

    first, second, third = read_trajectories(tmp_path / "run").records
    assert third.stop_reason == "unknown" and third.final_answer is None
    assert first.task_id == "gsm8k-test-893" and first.passed and first.verdict.score == 1.0
    assert first.source == "import" and first.delivery == "imported"
    assert first.model == "openai/gpt-4o-mini" and first.tokens_in == 120
    assert first.question == "How much does Mark make a week?"
    assert [s.action.tool for s in first.steps] == ["python", "read_skill_file", "respond"]
    python, read, respond = first.steps
    assert python.action.args == {"code": "print(8 * 5 * 12)"} and python.observation == "480"
    assert read.observation == "## Pitfalls ..." and read.read_sections == ["SKILL.md#Pitfalls"]
    assert respond.thought == "480" and first.final_answer == "480"
    assert {(u.kind, u.ref) for u in first.section_uses} == {
        ("cited", "SKILL.md#gsm8k-math/workflow"),
        ("read", "SKILL.md#Pitfalls"),
    }
    assert not second.passed and second.verdict.score == 0.25
    stage = read_manifest(tmp_path / "run").stages["import"]  # type: ignore[union-attr]
    assert stage.counts == {"imported": 3, "already_present": 0, "bad_lines": 7}

    # Idempotent: importing the same file again adds nothing.
    again = import_trajectories(source, tmp_path / "run")
    assert again.imported == 0 and again.already_present == 3
    assert len(read_trajectories(tmp_path / "run").records) == 3
    # The stage keeps the run's totals and every source (a second import replaced them).
    stage = read_manifest(tmp_path / "run").stages["import"]  # type: ignore[union-attr]
    assert stage.counts["imported"] == 3 and stage.config["sources"] == [str(source)]


def test_suite_checks_ids_and_scores_answers(tmp_path: Path) -> None:
    lines = [
        # gsm8k-test-3 (gold 540) is in the vendored slice, so this runs on a fresh clone.
        {"task_id": "gsm8k-test-3", "messages": chat("540"), "outcome": {"answer": 540}},
        {"task_id": "gsm8k-test-3", "messages": chat("17"), "outcome": {"answer": "17"}},
        {"task_id": "no-such-task", "messages": chat(), "outcome": {"passed": True}},
    ]
    report = import_trajectories(
        write_lines(tmp_path / "in.jsonl", lines), tmp_path / "run", suite="gsm8k"
    )
    assert report.imported == 2
    assert [(e.line, "not a task of suite 'gsm8k'" in e.message) for e in report.errors] == [
        (3, True)
    ]
    right, wrong = read_trajectories(tmp_path / "run").records
    assert right.passed and right.verdict.gold == ["540"] and right.split == "test"
    assert not wrong.passed and right.suite == wrong.suite == "gsm8k"


def test_nothing_good_creates_no_run_dir(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", ["[]", "{}"])
    report = import_trajectories(source, tmp_path / "run")
    assert report.imported == 0 and len(report.errors) == 2
    assert not (tmp_path / "run").exists()
    with pytest.raises(TrajectoryError, match="cannot read"):
        import_trajectories(tmp_path / "missing.jsonl", tmp_path / "run")


def test_documented_example_imports(tmp_path: Path) -> None:
    block = re.search(r"## Example line.*?```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    record = json.loads(block.group(1))
    report = import_trajectories(
        write_lines(tmp_path / "in.jsonl", [record]), tmp_path / "run", suite="gsm8k"
    )
    assert report.imported == 1 and not report.errors
    [t] = read_trajectories(tmp_path / "run").records
    assert t.passed and t.steps[0].observation == "540"


def test_cli_import_reports_bad_lines(tmp_path: Path) -> None:
    lines = [
        {"task_id": "gsm8k-test-893", "messages": chat(), "outcome": {"passed": True}},
        {"task_id": "x", "messages": chat(), "outcome": {"passed": True, "score": 3}},
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    result = CliRunner().invoke(
        main, ["trajectories", "import", str(source), "--run-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 1
    assert "imported 1 trajectories" in result.output and "1 bad lines" in result.output
    assert f"{source}:2: outcome.score" in result.output
    shown = CliRunner().invoke(main, ["trajectories", "show", str(tmp_path / "run")])
    assert shown.exit_code == 0 and "gsm8k-test-893" in shown.output


def test_cli_verbose_shows_every_problem_of_a_bad_line(tmp_path: Path) -> None:
    bad = {"task_id": "x", "messages": chat(), "outcome": {"passed": "maybe", "score": 3}}
    source = write_lines(tmp_path / "in.jsonl", [bad])
    args = ["trajectories", "import", str(source), "--run-dir", str(tmp_path / "run")]
    terse = CliRunner().invoke(main, args)
    assert terse.exit_code == 1 and "(+1 more; -v shows all)" in terse.output
    verbose = CliRunner().invoke(main, ["-v", *args])
    assert verbose.exit_code == 1
    assert "    outcome.passed:" in verbose.output and "    outcome.score:" in verbose.output
    # Given after the command, as users type it, -v means the same.
    after = CliRunner().invoke(main, [*args, "--verbose"])
    assert after.exit_code == 1 and after.output == verbose.output


def test_a_folder_of_chat_lines_and_results_for_chat_are_clear_errors(tmp_path: Path) -> None:
    """A folder was always read as official logs: every line of every chat-format file was
    reported as an unknown record type; --results was silently ignored for chat lines."""
    folder = tmp_path / "logs"
    folder.mkdir()
    line = {"task_id": "t1", "messages": chat(), "outcome": {"passed": True}}
    write_lines(folder / "a.jsonl", [line])
    with pytest.raises(TrajectoryError, match="is a folder of chat-format lines .a.jsonl"):
        import_trajectories(folder, tmp_path / "run")
    with pytest.raises(TrajectoryError, match="--results applies to official logs only"):
        import_trajectories(folder / "a.jsonl", tmp_path / "run", results={"t1": True})
    assert not (tmp_path / "run").exists()


def test_null_for_an_optional_figure_reads_as_not_measured(tmp_path: Path) -> None:
    """Found by a new-user trial: `"latency_s": null` was refused though the field is
    optional (exporters write null for what they did not measure)."""
    line = {
        "task_id": "t1",
        "messages": chat(),
        "outcome": {"passed": False},
        "latency_s": None,
        "tokens_in": None,
        "cost_usd": None,
        "seed": None,
    }
    path = write_lines(tmp_path / "in.jsonl", [line])
    report = import_trajectories(path, tmp_path / "run")
    assert not report.errors
    (traj,) = read_trajectories(tmp_path / "run").records
    assert traj.latency_s == 0.0 and traj.seed == 0
    # A token count not measured is unknown, not 0: sums and means leave it out.
    assert traj.tokens_in is None and traj.tokens_out is None


def test_byte_order_mark_is_not_part_of_line_one(tmp_path: Path) -> None:
    # Windows tools (Notepad, PowerShell's Out-File) start UTF-8 files with a BOM.
    bom = b"\xef\xbb\xbf"
    line = {"task_id": "t1", "messages": chat(), "outcome": {"passed": True}}
    source = tmp_path / "bom.jsonl"
    source.write_bytes(bom + (json.dumps(line) + "\n").encode())
    report = import_trajectories(source, tmp_path / "run")
    assert report.imported == 1 and not report.errors
    logs = tmp_path / "logs"
    logs.mkdir()
    official = Path(__file__).parent / "fixtures" / "official_logs" / "cli_skill_agent_13-1.jsonl"
    (logs / official.name).write_bytes(bom + official.read_bytes())
    results = tmp_path / "results.json"
    results.write_bytes(bom + b'{"13-1": false}')
    for path in (logs, logs / official.name):  # auto-detected as official, folder or file
        report = import_trajectories(path, tmp_path / "run2", results=results)
        assert report.format == "official" and not report.errors
    trajectory = read_trajectories(tmp_path / "run2").records[0]
    assert trajectory.passed is False  # the results file was read too


def test_answer_label_is_stripped_and_stop_reason_is_kept(tmp_path: Path) -> None:
    labelled = chat(answer="Weekly pay is 480.\nFINAL ANSWER: 480")
    lines = [
        {"task_id": "t1", "messages": labelled, "outcome": {"passed": True}},
        # Out of turns: the last reply is no answer, whatever it says.
        {"task_id": "t2", "messages": chat(), "outcome": {"passed": False},
         "stop_reason": "max_turns"},
    ]  # fmt: skip
    report = import_trajectories(write_lines(tmp_path / "in.jsonl", lines), tmp_path / "run")
    assert report.imported == 2 and not report.errors
    by_task = {t.task_id: t for t in read_trajectories(tmp_path / "run").records}
    assert (by_task["t1"].final_answer, by_task["t1"].stop_reason) == ("480", "submitted")
    assert (by_task["t2"].final_answer, by_task["t2"].stop_reason) == (None, "max_turns")


def test_trajectory_ids_of_earlier_imports_are_unchanged(tmp_path: Path) -> None:
    # Ids are content hashes: a new optional import field must not change them, or
    # importing the same file again would add every line twice.
    line = {"task_id": "t1", "messages": chat(), "outcome": {"passed": True}}
    report = import_trajectories(write_lines(tmp_path / "in.jsonl", [line]), tmp_path / "run")
    assert report.trajectory_ids == ["6c282f41354da7c1"]


def test_nothing_in_the_chat_is_dropped(tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "SKILL: always check the units."},
        {"role": "user", "content": "How much does Mark make a week?"},
        {"role": "user", "content": "Use the python tool."},
        *chat()[2:5],
        {"role": "tool", "tool_call_id": "nobody", "content": "stray result"},
        {"role": "system", "content": "2 turns left."},
        chat()[5],
    ]
    line = {"task_id": "t1", "messages": messages, "outcome": {"passed": True}}
    import_trajectories(write_lines(tmp_path / "in.jsonl", [line]), tmp_path / "run")
    [t] = read_trajectories(tmp_path / "run").records
    assert [(m.role, m.content) for m in t.prompt] == [
        ("system", "SKILL: always check the units."),
        ("user", "How much does Mark make a week?"),
        ("user", "Use the python tool."),
    ]
    assert t.steps[0].observation == "480"
    assert t.steps[1].observation == "## Pitfalls ...\nstray result\n[system] 2 turns left."
    shown = CliRunner().invoke(main, ["trajectories", "show", str(tmp_path / "run"), "--id", t.id])
    assert "prompt (system):\n    SKILL: always check the units." in shown.output


def test_analysts_see_the_imported_prompt_bounded(tmp_path: Path) -> None:
    from toolkit.analysts.prompts import MAX_PROMPT_CHARS, render_trajectory

    skill_text = "SKILL: check units. " + "x" * 50_000
    messages = [{"role": "system", "content": skill_text}, *chat()[1:]]
    line = {"task_id": "t1", "messages": messages, "outcome": {"passed": True}}
    import_trajectories(write_lines(tmp_path / "in.jsonl", [line]), tmp_path / "run")
    [t] = read_trajectories(tmp_path / "run").records
    text = render_trajectory(t, show_gold=True)
    assert "AGENT PROMPT" in text and "[system] SKILL: check units." in text
    assert "[user]" not in text  # the task message is shown once, as TASK
    prompt = text.split("AGENT PROMPT", 1)[1].split("AGENT STEPS:", 1)[0]
    assert len(prompt) < MAX_PROMPT_CHARS + 100
    rollout = t.model_copy(update={"prompt": []})  # our own rollouts record none
    assert "AGENT PROMPT" not in render_trajectory(rollout, show_gold=True)
