import json

import numpy as np
import pytest

from toolkit.tasks import VENDORED_DATA_DIR, get_suite
from toolkit.tasks.gsm8k import extract_number, gold_number, score_number


@pytest.fixture(scope="module")
def suite():
    return get_suite("gsm8k", data_dir=VENDORED_DATA_DIR)


def test_gold_number_from_solution():
    assert gold_number("...\n#### 18") == "18"
    assert gold_number("so $1,200\n#### 1,200") == "1200"
    assert gold_number("#### -3.5") == "-3.5"
    with pytest.raises(ValueError, match="####"):
        gold_number("The answer is 18")
    with pytest.raises(ValueError):
        gold_number("#### 1.2.3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", 18.0),
        ("The answer is $1,234.50.", 1234.5),
        ("She makes 9 * 2 = $18 every day", 18.0),
        ("16-3-4=9", 9.0),  # a minus after a digit is an operator
        ("It dropped to -5 degrees", -5.0),
        ("−7", -7.0),  # unicode minus
        ("\\boxed{42} and later 7", 42.0),
        ("work... #### 70,000\nnote 3", 70000.0),
        ("70,000 dollars", 70000.0),
        ("about .5 of them", 0.5),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        (18, True),
        (18.0, True),
        (18.0000001, True),  # within the 1e-6 tolerance
        (18.001, False),
        ("18", True),
        ("$18", True),
        ("18 dollars", True),
        ("The total is 18.", True),
        ("17", False),
        (np.int64(18), True),
        (np.float32(18.0), True),
    ],
)
def test_score_number(answer, passed):
    score = score_number("18", answer)
    assert score.passed is passed
    assert score.gold == ["18"]


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (None, "no answer"),
        (True, "bool"),
        ([18], "list"),
        ({"answer": 18}, "dict"),
        ("eighteen", "no number"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
    ],
)
def test_unexpected_answers_fail_with_detail(answer, detail):
    score = score_number("18", answer)
    assert not score.passed and detail in score.details


def test_workspace_is_empty(suite, tmp_path):
    task = suite.load("all", limit=1).tasks[0]
    assert suite.build_workspace(task, tmp_path / "ws") == []
    assert list((tmp_path / "ws").iterdir()) == []


def test_tolerance_option(suite):
    loose = get_suite("gsm8k", data_dir=VENDORED_DATA_DIR, tolerance=0.5)
    task = suite.load_ids(["gsm8k-test-0"])[0]
    assert not suite.score(task, 18.4).passed
    assert loose.score(task, 18.4).passed


def test_load_vendored(suite):
    result = suite.load("all")
    assert len(result.tasks) == 30 and not result.bad_rows
    train, test = suite.load("train").ids, suite.load("test").ids
    assert train and test and not set(train) & set(test)
    assert sorted(train + test) == sorted(result.ids)
    for task in result.tasks:
        assert task.answers == [str(int(float(task.answers[0])))]  # all golds are integers
        assert suite.score(task, task.answers[0]).passed
        assert suite.score(task, task.metadata["solution"]).passed  # "#### N" is read
        assert "####" not in suite.summarise(task)  # the solution is never shown


def test_malformed_rows(tmp_path):
    good = json.loads((VENDORED_DATA_DIR / "gsm8k/gsm8k_test300.jsonl").open().readline())
    lines = [
        json.dumps(good),
        json.dumps({**good, "id": "b1", "solution": "no final line"}),
        json.dumps({**good, "id": "b2", "answer_number": "19"}),
        json.dumps({k: v for k, v in good.items() if k != "solution"} | {"id": "b3"}),
        json.dumps({**good, "id": "b4", "question": 5}),
        "oops",
    ]
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "gsm8k_test300.jsonl").write_text("\n".join(lines), encoding="utf-8")
    result = get_suite("gsm8k", data_dir=tmp_path).load("all")
    assert result.ids == [good["id"]]
    messages = {e.line: e.message for e in result.bad_rows}
    assert sorted(messages) == [2, 3, 4, 5, 6]
    assert "####" in messages[2]
    assert "disagrees" in messages[3]
    assert "solution" in messages[4]
    assert "strings" in messages[5]
    assert "invalid JSON" in messages[6]
