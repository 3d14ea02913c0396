import json

import pytest

from toolkit.tasks import TaskError, get_suite


def write_jsonl(path, records):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def qa_file(tmp_path):
    (tmp_path / "data.csv").write_text("x,y\n1,2\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("hello", encoding="utf-8")
    return write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "q1", "question": "Capital of France?", "answer": "Paris", "split": "train"},
            {"id": 2, "question": "2+2?", "answer": 4, "files": ["data.csv"], "split": "test"},
            {
                "id": "q3",
                "question": "Colour?",
                "answer": ["grey", "gray"],
                "files": {"input/notes.txt": "sub/notes.txt"},
            },
        ],
    )


def test_exact_scoring(qa_file):
    suite = get_suite("jsonl", path=qa_file)
    tasks = {t.id: t for t in suite.load("all").tasks}
    assert set(tasks) == {"q1", "2", "q3"}
    assert suite.score(tasks["q1"], "  paris ").passed  # case and outer whitespace ignored
    assert not suite.score(tasks["q1"], "Paris, France").passed
    assert suite.score(tasks["q3"], "Gray").passed  # any accepted alternative
    assert suite.score(tasks["2"], 4).passed
    strict = get_suite("jsonl", path=qa_file, ignore_case=False)
    assert not strict.score(tasks["q1"], "paris").passed


def test_numeric_scoring(qa_file, tmp_path):
    path = write_jsonl(
        tmp_path / "num.jsonl",
        [
            {"id": "n1", "question": "?", "answer": "1,250.5"},
            {"id": "n2", "question": "?", "answer": 3},
        ],
    )
    suite = get_suite("jsonl", path=path, scoring="numeric", tolerance=0.01)
    n1, n2 = suite.load("all").tasks
    assert suite.score(n1, "It costs $1,250.50").passed
    assert suite.score(n1, 1250.505).passed
    assert not suite.score(n1, "1251").passed
    assert suite.score(n2, "3").passed
    assert "no number" in suite.score(n2, "three").details


def test_regex_scoring(tmp_path):
    path = write_jsonl(
        tmp_path / "re.jsonl", [{"id": "r", "question": "?", "answer": r"\d{4}-\d{2}"}]
    )
    suite = get_suite("jsonl", path=path, scoring="regex")
    (task,) = suite.load("all").tasks
    assert suite.score(task, " 2024-05 ").passed
    assert not suite.score(task, "2024-05-01").passed  # the whole answer must match


@pytest.mark.parametrize("answer", [None, True, [1], {"a": 1}, object()])
def test_unexpected_answer_types(qa_file, answer):
    for scoring in ("exact", "numeric", "regex"):
        suite = get_suite("jsonl", path=qa_file, scoring="exact")
        task = suite.load("all").tasks[0]
        score = get_suite("jsonl", path=qa_file, scoring=scoring).score(task, answer)
        assert not score.passed and score.details


def test_splits_and_files(qa_file, tmp_path):
    suite = get_suite("jsonl", path=qa_file)
    assert suite.load("train").ids[0] == "q1"
    assert "2" in suite.load("test").ids
    tasks = {t.id: t for t in suite.load("all").tasks}
    written = suite.build_workspace(tasks["q3"], tmp_path / "ws")
    assert written == [tmp_path / "ws" / "input" / "notes.txt"]
    assert written[0].read_text() == "hello"
    suite.build_workspace(tasks["2"], tmp_path / "ws2")
    assert (tmp_path / "ws2" / "data.csv").read_text() == "x,y\n1,2\n"
    # The agent's first message lists the files (agent.task_message): not the summary too.
    assert suite.summarise(tasks["2"]) == f"Question: {tasks['2'].question}"


def test_bad_lines_get_one_clear_error_each(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "ok", "question": "?", "answer": "1"},
            "{broken",
            {"question": "?", "answer": "1"},
            {"id": "x2", "question": "", "answer": "1"},
            {"id": "x3", "question": "?", "answer": {"a": 1}},
            {"id": "x4", "question": "?", "answer": "1", "files": ["missing.csv"]},
            {"id": "x5", "question": "?", "answer": "1", "files": ["/etc/passwd"]},
            {"id": "x6", "question": "?", "answer": "1", "split": "dev"},
            {"id": "x7", "question": "?", "answer": "1", "files": {"../out.txt": "bad.jsonl"}},
            {"id": "ok", "question": "?", "answer": "2"},
        ],
    )
    result = get_suite("jsonl", path=path).load("all")
    assert result.ids == ["ok"]
    errors = {e.line: e for e in result.bad_rows}
    assert sorted(errors) == list(range(2, 11))
    assert "invalid JSON" in errors[2].message
    assert "id" in errors[3].message
    assert "question" in errors[4].message
    assert "answer" in errors[5].message
    assert "missing.csv" in errors[6].message
    assert "relative" in errors[7].message
    assert "split" in errors[8].message
    assert ".." in errors[9].message
    assert errors[10].message == "duplicate id"


def test_rule_specific_validation(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "question": "?", "answer": "abc"},
            {"id": "b", "question": "?", "answer": "(["},
        ],
    )
    numeric = get_suite("jsonl", path=path, scoring="numeric").load("all")
    assert numeric.ids == [] and "not a number" in numeric.bad_rows[0].message
    regex = get_suite("jsonl", path=path, scoring="regex").load("all")
    assert regex.ids == ["a"] and "regex" in regex.bad_rows[0].message


def test_options_are_checked(tmp_path):
    with pytest.raises(TaskError, match="path"):
        get_suite("jsonl")
    with pytest.raises(TaskError, match="scoring"):
        get_suite("jsonl", path=tmp_path / "x.jsonl", scoring="fuzzy")
    with pytest.raises(TaskError, match="not found"):
        get_suite("jsonl", path=tmp_path / "x.jsonl").load("all")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "\xe9"}\n')
    with pytest.raises(TaskError, match="cannot read"):
        get_suite("jsonl", path=tmp_path / "latin1.jsonl").load("all")


def test_boolean_answers_are_the_words_true_and_false(tmp_path):
    path = write_jsonl(
        tmp_path / "bool.jsonl",
        [
            {"id": "b", "question": "Is 7 prime?", "answer": True},
            {"id": "c", "question": "Is 8 prime?", "answer": [False, "no"]},
        ],
    )
    suite = get_suite("jsonl", path=path)
    b, c = suite.load("all").tasks
    assert b.answers == ["true"] and c.answers == ["false", "no"]  # not "1" and "0"
    assert suite.score(b, "True").passed and not suite.score(b, "1").passed
    assert suite.score(c, "false").passed


def test_a_byte_order_mark_is_no_bad_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    row = '{"id": "a", "question": "?", "answer": "x"}\n'
    path.write_bytes(b"\xef\xbb\xbf" + row.encode() + row.replace('"a"', '"b"').encode())
    result = get_suite("jsonl", path=path).load("all")
    assert result.ids == ["a", "b"] and result.bad_rows == []


def test_row_errors_speak_the_files_terms(tmp_path):
    (tmp_path / "files").mkdir()
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "d", "question": "?", "answer": "1", "files": ["files"]},
            {"id": "e", "question": "?", "answer": None},
            ["a", "b"],
            {"id": "f", "question": "?", "answer": [None]},
            {"id": None, "question": "?", "answer": "1"},
            {"id": "g", "question": "?", "answer": "1", "files": "a.csv"},
            {"id": "h", "question": "?", "anwser": "1"},
        ],
    )
    errors = [e.message for e in get_suite("jsonl", path=path).load("all").bad_rows]
    assert errors == [
        "file 'files' is a folder next to bad.jsonl: list the files in it one by one",
        "answer: must be a string, number, or list of them, not null",
        'each line must be a JSON object ({"id": ..., ...}), not a JSON array',
        "answer: must be a string, number, or list of them, not a list holding null",
        "id: must be a string or an integer, not null",
        "files: must be a list of paths, or an object mapping workspace names to paths, "
        "not a string",
        "answer: Field required (unknown field(s) 'anwser')",
    ]


def test_numeric_scoring_keeps_the_alternatives_with_a_number_and_notes_the_rest(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "g", "question": "?", "answer": ["5", "five"]},
            {"id": "w", "question": "?", "answer": ["five", "V"]},
            {"id": "x", "question": "?", "answer": "1", "anwser": "2", "notes": "mine"},
        ],
    )
    result = get_suite("jsonl", path=path, scoring="numeric").load("all")
    assert result.ids == ["g", "x"]
    (g, x) = result.tasks
    assert g.answers == ["5"]
    assert result.bad_rows[0].message == "no answer is a number (scoring=numeric): 'five', 'V'"
    assert [(n.line, n.id, n.message) for n in result.notes] == [
        (1, "g", "answer 'five' holds no number: ignored by scoring=numeric"),
        (3, "x", "unknown field(s) 'anwser', 'notes' ignored; the fields are id, question, "
         "answer, files, split"),
    ]  # fmt: skip
    exact = get_suite("jsonl", path=path).load("all")
    assert exact.tasks[0].answers == ["5", "five"] and len(exact.notes) == 1  # the field only


def test_a_file_outside_the_tasks_folder_says_how_to_name_it(tmp_path):
    """A trial's finding: "files": ["../x.csv"] (a file that exists) was skipped with
    pydantic's "path: Value error, workspace path must be relative without '..'", naming
    neither the row's field nor the mapping form that gives such a file a workspace name."""
    (tmp_path / "x.csv").write_text("a\n1\n", encoding="utf-8")
    (tmp_path / "d").mkdir()
    path = write_jsonl(
        tmp_path / "d" / "t.jsonl",
        [
            {"id": "a", "question": "?", "answer": "1", "files": ["../x.csv"]},
            {"id": "b", "question": "?", "answer": "1", "files": {"../y.csv": "../x.csv"}},
            {"id": "c", "question": "?", "answer": "1", "files": {"/y.csv": "../x.csv"}},
            {"id": "ok", "question": "?", "answer": "1", "files": {"x.csv": "../x.csv"}},
        ],
    )
    loaded = get_suite("jsonl", path=path).load("all")
    assert [e.message for e in loaded.bad_rows] == [
        "file '../x.csv' is outside the JSONL file's folder, so it has no name in the agent's "
        'folder: give one with "files": {"x.csv": "../x.csv"}',
        "workspace name '../y.csv' must be a relative path without '..' (the name the agent "
        "sees in its folder)",
        "workspace name '/y.csv' must be a relative path without '..' (the name the agent "
        "sees in its folder)",
    ]
    assert [f.path for t in loaded.tasks for f in t.files] == ["x.csv"]


def test_numeric_golds_in_scientific_notation_are_their_value(tmp_path):
    """A trial's finding: a JSON number gold like 1e-07 reached the scorer as '1e-07', which
    GSM8K's last-number rule read as -7 (1e+21 as 21): an agent answering 0.0000001 failed,
    and `tasks check` passed the gold against itself. A gold that holds several numbers
    ('3/4', '12 km, or 7.46 miles') is noted with the number it is compared as."""
    path = write_jsonl(
        tmp_path / "sci.jsonl",
        [
            {"id": "small", "question": "?", "answer": 1e-07},
            {"id": "big", "question": "?", "answer": "-2.5e3"},
            {"id": "frac", "question": "?", "answer": "3/4"},
            {"id": "words", "question": "?", "answer": ["12 km, or 7.46 miles", "1,234"]},
        ],
    )
    suite = get_suite("jsonl", path=path, scoring="numeric", tolerance=1e-9)
    loaded = suite.load("all")
    small, big, frac, _ = loaded.tasks
    assert suite.score(small, "0.0000001").passed and not suite.score(small, "-7").passed
    assert suite.score(small, 1e-07).passed
    assert suite.score(big, "-2500").passed and suite.score(big, "-2.5e3").passed
    assert not suite.score(big, "3").passed
    assert suite.score(frac, "4").passed  # GSM8K's rule for text with several numbers
    assert [n.message for n in loaded.notes] == [
        "answer '3/4' holds several numbers: scoring=numeric compares the last, 4",
        "answer '12 km, or 7.46 miles' holds several numbers: scoring=numeric compares the "
        "last, 7.46",
    ]
