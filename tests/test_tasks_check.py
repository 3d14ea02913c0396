"""``trace2skill tasks list|show|check`` and :func:`toolkit.tasks.check.check_suite`."""

import json

import pytest
from click.testing import CliRunner

from tests.test_tasks_jsonl import write_jsonl
from toolkit.cli import main
from toolkit.tasks import VENDORED_DATA_DIR, get_suite
from toolkit.tasks.check import check_suite

VENDORED = str(VENDORED_DATA_DIR)


@pytest.mark.parametrize("name", ["wikitq", "gsm8k"])
def test_every_vendored_gold_passes_its_own_scorer(name):
    suite = get_suite(name, data_dir=VENDORED_DATA_DIR)
    report = check_suite(suite)
    total = len(suite.load("all").tasks)
    assert report.ok and report.checked == total == sum(report.splits.values())
    assert report.failures == [] and report.unchecked == []
    test_only = check_suite(suite, "test", limit=3, seed=1)
    assert test_only.checked == 3 and test_only.splits == report.splits


def test_check_reports_bad_rows_and_regex_golds_it_cannot_score(tmp_path):
    rows = [{"id": "a", "question": "Colour?", "answer": "re+d"}, {"id": "b", "question": "?"}]
    path = write_jsonl(tmp_path / "mine.jsonl", [*rows, '{"id": "c", "question": "Q", "answer": 1'])
    report = check_suite(get_suite("jsonl", path=path, scoring="regex"))
    assert [(r.line, r.id) for r in report.bad_rows] == [(2, "b"), (3, None)]
    assert report.unchecked == ["a"] and report.checked == 0 and not report.ok


def test_cli_check_exit_code_and_report(tmp_path):
    good = write_jsonl(
        tmp_path / "mine.jsonl", [{"id": "a", "question": "2+2?", "answer": ["4", "four"]}]
    )
    runner = CliRunner()
    out = runner.invoke(main, ["tasks", "check", "--suite", "jsonl", "--data", str(good)])
    assert out.exit_code == 0, out.output
    assert "gold answers scored (all): 1, passed 1, failed 0" in out.stdout
    assert "check jsonl/all [" in out.stderr and "1/1 pass 1/1" in out.stderr

    bad = tmp_path / "bad" / "mine.jsonl"
    bad.parent.mkdir()
    write_jsonl(bad, [{"id": "a", "question": "2+2?", "answer": "four"}, "not json"])
    out = runner.invoke(
        main,
        ["tasks", "check", "--suite", "jsonl", "--data", str(bad), "--scoring", "numeric"]
        + ["--json", "--no-progress"],
    )
    assert out.exit_code == 1 and out.stderr == ""
    report = json.loads(out.stdout)
    assert [r["line"] for r in report["bad_rows"]] == [1, 2]
    assert "is not a number (scoring=numeric)" in report["bad_rows"][0]["message"]


def test_cli_list_matches_the_subset_a_run_draws():
    runner = CliRunner()
    args = ["tasks", "list", "--suite", "gsm8k", "--data", VENDORED, "--split", "test"]
    out = runner.invoke(main, [*args, "--limit", "4", "--seed", "3", "--json"])
    assert out.exit_code == 0, out.output
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    expected = get_suite("gsm8k", data_dir=VENDORED_DATA_DIR).load("test", limit=4, seed=3)
    assert [t["id"] for t in listed] == expected.ids
    assert all(t["split"] == "test" and t["answers"] for t in listed)

    table = runner.invoke(main, [*args, "--limit", "4", "--seed", "3"])
    first = expected.tasks[0]
    assert table.stdout.splitlines()[0].split()[:3] == [first.id, "test", first.answers[0]]
    assert len(table.stdout.splitlines()) == 4 and "4 tasks" in table.stderr


def test_cli_show_prints_the_prompt_text_and_gold():
    suite = get_suite("wikitq", data_dir=VENDORED_DATA_DIR)
    task = suite.load("test", limit=1).tasks[0]
    out = CliRunner().invoke(
        main, ["tasks", "show", task.id, "--suite", "wikitq", "--data", VENDORED]
    )
    assert out.exit_code == 0, out.output
    assert f"task {task.id} (wikitq, split test)" in out.stdout
    assert f"gold: {' | '.join(task.answers)}" in out.stdout
    assert suite.summarise(task) in out.stdout

    missing = CliRunner().invoke(main, ["tasks", "show", "nope", "--suite", "wikitq"])
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: ") and "1 task id(s) not found: nope" in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "jsonl"], "--suite jsonl needs --data FILE.jsonl"),
        (["--suite", "jsonl", "--data", VENDORED], "must be the JSONL task file"),
        (["--suite", "wikitq", "--data", __file__], "must be a data folder"),
        (["--suite", "wikitq", "--tolerance", "0.1"], "apply to --suite jsonl only"),
    ],
)
def test_cli_suite_option_mistakes_are_one_line(args, message):
    out = CliRunner().invoke(main, ["tasks", "list", *args])
    assert out.exit_code == 1
    assert out.output.startswith("Error: ") and message in out.output
    assert out.output.count("\n") == 1


def test_cli_check_lists_notes_without_failing(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [{"id": "a", "question": "2+2?", "answer": ["4", "four"], "hint": "add"}],
    )
    out = CliRunner().invoke(
        main,
        ["tasks", "check", "--suite", "jsonl", "--data", str(path), "--scoring", "numeric"]
        + ["--no-progress"],
    )
    assert out.exit_code == 0, out.output
    assert "notes on rows kept: 2" in out.stdout
    assert "mine.jsonl:1 (a): answer 'four' holds no number: ignored by scoring=numeric" in (
        out.stdout
    )
    assert "unknown field(s) 'hint' ignored" in out.stdout
    listed = CliRunner().invoke(main, ["tasks", "list", "--suite", "jsonl", "--data", str(path)])
    assert "note mine.jsonl:1 (a): unknown field(s) 'hint'" in listed.stderr


def test_cli_list_of_an_empty_split_names_the_splits_there_are(tmp_path):
    """A new-user trial: `tasks list` said only "no tasks in split 'test' of jsonl"; eval and
    evolve name the splits the data has and how to mark rows: list says the same."""
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [{"id": f"q{i}", "question": "2+2?", "answer": 4, "split": "train"} for i in range(2)],
    )
    args = ["tasks", "list", "--suite", "jsonl", "--data", str(path), "--split", "test"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.stdout == (
        f"split 'test' of suite 'jsonl' has no tasks in {path} (it has: train 2); "
        'mark rows with "split": "test" or choose another split\n'
    )


def test_check_command_names_the_data_and_scoring_a_run_used(tmp_path):
    from toolkit.tasks.check import check_command

    path = write_jsonl(tmp_path / "my tasks.jsonl", [{"id": "a", "question": "?", "answer": 1}])
    assert check_command(get_suite("jsonl", path=path, scoring="numeric", tolerance=0.5)) == (
        f"trace2skill tasks check --suite jsonl --data '{path}' --scoring numeric --tolerance 0.5"
    )
    assert check_command(get_suite("gsm8k")) == "trace2skill tasks check --suite gsm8k"
    assert check_command(get_suite("gsm8k", data_dir=tmp_path)) == (
        f"trace2skill tasks check --suite gsm8k --data {tmp_path}"
    )
