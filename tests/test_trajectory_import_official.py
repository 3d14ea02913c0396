"""Importing the official Trace2Skill agent logs: every message kept, outcomes, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from toolkit.cli import main
from toolkit.official_logs import parse_official_log, read_results
from toolkit.trajectory import (
    ImportMessage,
    import_trajectories,
    imported_steps,
    read_trajectories,
)

LOGS = Path(__file__).parent / "fixtures" / "official_logs"
GOOD = LOGS / "cli_skill_agent_13-1.jsonl"


def test_official_log_keeps_observations_and_outcome(tmp_path: Path) -> None:
    report = import_trajectories(GOOD, tmp_path / "run")
    assert report.format == "official" and report.imported == 1 and not report.errors
    trajectory = json.loads(report.trajectories_path.read_text())
    assert trajectory["task_id"] == "13-1"
    assert trajectory["verdict"]["passed"] is True
    steps = trajectory["steps"]
    assert [s["observation"] for s in steps] == [
        "Observation: 12",
        "Observation: saved /work/13-1_output.xlsx",
        "",
    ]
    assert steps[0]["thought"].startswith("Thought: look at the sheet first.")
    assert trajectory["question"].startswith("Fill column C")
    assert trajectory["metadata"]["agent_name"] == "cli_skill_agent"
    assert [(m["role"], m["content"][:20]) for m in trajectory["prompt"]] == [
        ("system", "You are a spreadshee"),
        ("user", "Task: Fill column C "),
    ]


def test_chat_format_keeps_react_observations_sent_as_user_messages() -> None:
    messages = [
        ImportMessage(role="user", content="Task: add"),
        ImportMessage(role="assistant", content="Action: python"),
        ImportMessage(role="user", content="Observation: 4"),
        ImportMessage(role="user", content="Observation: (second)"),
        ImportMessage(role="assistant", content="4"),
    ]
    steps, _, last = imported_steps(messages)
    assert [s.observation for s in steps] == ["Observation: 4\nObservation: (second)", ""]
    assert last == "4"


def test_folder_import_with_results_file_overriding_success(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps([{"instance_id": "13-1", "score": 0}, {"id": "27-2", "passed": True}])
    )
    report = import_trajectories(LOGS, tmp_path / "run", results=results)
    assert report.imported == 2 and not report.errors
    verdicts = {
        json.loads(line)["task_id"]: json.loads(line)["verdict"]["passed"]
        for line in report.trajectories_path.read_text().splitlines()
    }
    assert verdicts == {"13-1": False, "27-2": True}
    again = import_trajectories(LOGS, tmp_path / "run", results=results)
    assert again.imported == 0 and again.already_present == 2


def test_every_bad_line_is_reported_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "logs"
    bad.mkdir()
    lines = GOOD.read_text().splitlines()
    broken = [lines[0], "{not json", json.dumps({"type": "tool_call"}), *lines[1:-1]]
    (bad / "cli_skill_agent_9-9.jsonl").write_text("\n".join(broken) + "\n")
    report = import_trajectories(bad, tmp_path / "run", format="official")
    messages = [str(e) for e in report.errors]
    assert report.imported == 0
    assert any("line 2: not JSON" in m for m in messages)
    assert any("line 3: unknown record type 'tool_call'" in m for m in messages)
    assert any("no outcome for task '9-9'" in m for m in messages)
    assert all(m.startswith("cli_skill_agent_9-9.jsonl: ") for m in messages)
    assert not (tmp_path / "run").exists()


def test_cli_reports_all_errors_and_says_nothing_was_written(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(LOGS, logs)
    (logs / "agent_1-1.jsonl").write_text('{"type": "session_start"}\n{"type": "message"}\n')
    (logs / "agent_2-2.jsonl").write_text('{"type": "session_start"}\n[1]\n')
    result = CliRunner().invoke(
        main, ["trajectories", "import", str(logs), "--run-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 1
    assert "imported 2 trajectories (official format)" in result.output
    assert "2 bad files)" in result.output  # files, not problems (one file has two)
    assert "agent_1-1.jsonl: line 2:" in result.output
    assert "agent_2-2.jsonl: line 2: unknown record type None" in result.output
    only_bad = CliRunner().invoke(
        main,
        ["trajectories", "import", str(logs / "agent_1-1.jsonl"), "--run-dir",
         str(tmp_path / "empty"), "--format", "official"],
    )  # fmt: skip
    assert only_bad.exit_code == 1
    assert "imported nothing (official format)" in only_bad.output
    assert "was not written" in only_bad.output


def test_results_file_shapes(tmp_path: Path) -> None:
    mapping = tmp_path / "a.json"
    mapping.write_text(json.dumps({"1": True, "2": False}))
    assert read_results(mapping) == {"1": True, "2": False}
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"task_id": "1", "success": true}\n{"task_id": "2", "correct": false}\n')
    assert read_results(jsonl) == {"1": True, "2": False}


def test_parse_is_pure_and_names_task_from_file_name() -> None:
    log = parse_official_log(Path("x/my_agent_5-3.jsonl"), GOOD.read_text())
    assert log.record is not None and log.record.task_id == "my_agent_5-3"  # agent name differs


def test_forced_chat_format_on_a_folder_says_so() -> None:
    # The folder holds official logs: "starts with a chat line" would be false.
    result = CliRunner().invoke(
        main, ["trajectories", "import", str(LOGS), "--run-dir", "unused", "--format", "chat"]
    )
    assert result.exit_code != 0
    assert "--format chat takes one JSONL file, not a folder" in result.output
    assert "chat-format lines" not in result.output


def _log(path: Path, replies: list[str], result: dict[str, object] | None) -> Path:
    records: list[dict[str, object]] = [
        {"type": "session_start", "agent_name": "agent"},
        {"type": "message", "role": "system", "content": "Solve it."},
        {"type": "message", "role": "user", "content": "Task: 1 + 1?"},
    ]
    for reply in replies:
        records.append({"type": "message", "role": "assistant", "content": reply})
        records.append({"type": "message", "role": "user", "content": "Observation: 2"})
    if result is not None:
        records.append({"type": "result", **result})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_official_answer_without_label_and_unsubmitted_logs_have_none(tmp_path: Path) -> None:
    done = _log(
        tmp_path / "agent_1.jsonl",
        [
            "Thought: add.\nAction: python\nAction Input: print(1 + 1)",
            "Thought: done.\nFINAL ANSWER: 2",
        ],
        {"success": True, "total_turns": 2},
    )
    # Killed mid-run: no result record, its last reply a thought and an action.
    killed = _log(
        tmp_path / "agent_2.jsonl", ["Thought: add.\nAction: python\nAction Input: 1+1"], None
    )
    run = tmp_path / "run"
    assert import_trajectories(done, run).imported == 1
    report = import_trajectories(killed, run, results={"2": False})
    assert report.imported == 1 and not report.errors
    # The fixture's failed log ends on a thought/action too, with success false.
    import_trajectories(LOGS / "cli_skill_agent_27-2.jsonl", run)
    by_task = {t.task_id: t for t in read_trajectories(run).records}
    assert (by_task["1"].final_answer, by_task["1"].stop_reason) == ("2", "submitted")
    assert (by_task["2"].final_answer, by_task["2"].stop_reason) == (None, "unknown")
    assert (by_task["27-2"].final_answer, by_task["27-2"].stop_reason) == (None, "unknown")
    # The official spreadsheet agent's completion signal is a submission.
    by_task_13 = import_trajectories(GOOD, tmp_path / "run13")
    finished = read_trajectories(by_task_13.trajectories_path).records[0]
    assert finished.stop_reason == "submitted" and "TASK_COMPLETE" in (finished.final_answer or "")
