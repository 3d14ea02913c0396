import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

from toolkit.tasks import VENDORED_DATA_DIR, get_suite
from toolkit.tasks.wikitq import parse_wtq_csv, score_wtq
from toolkit.tasks.wikitq_eval import (
    DateValue,
    NumberValue,
    StringValue,
    check_denotation,
    normalize,
    parse_date,
    parse_number,
    to_value,
    to_value_list,
)


@pytest.fixture(scope="module")
def suite():
    return get_suite("wikitq", data_dir=VENDORED_DATA_DIR)


# -- normalize: every rule of SOURCE.md -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Matti Yrjölä", "matti yrjola"),  # diacritics (NFKD, marks dropped)
        ("Teodora-Mădălina", "teodora-madalina"),
        ("it’s", "it's"),  # smart single quote
        ("´tis`", "tis'"),  # NFKD turns the acute accent into a space first
        ("“Hello”", "hello"),  # smart double quotes, then outer quotes removed
        ("1990–1991", "1990-1991"),  # en dash
        ("a—b−c‐d", "a-b-c-d"),  # em dash, minus, hyphen
        ("Paris[1]", "paris"),  # trailing citation
        ("Paris[a][12]", "paris"),
        ("[1]", ""),  # a numeric citation alone is removed
        ("[note]", "[note]"),  # a non-numeric bracket at the start stays
        ("Smith*", "smith"),
        ("Smith†‡", "smith"),
        ("Gold•♦#+", "gold"),
        ("Berlin (Germany)", "berlin"),  # trailing parenthesis
        ("Berlin (a) (b)", "berlin"),
        ("(Germany)", "(germany)"),  # at the start: kept
        ("Berlin(Germany)", "berlin(germany)"),  # needs the space
        ('"Dil Ka Haal"', "dil ka haal"),  # outer quotes
        ('"a" and "b"', '"a" and "b"'),  # inner quotes prevent the strip
        ('"Berlin"[1]', "berlin"),  # rules repeat until nothing changes
        ('"Berlin (city)"', "berlin"),
        ("Berlin (city)[2]", "berlin"),
        ("Inc.", "inc"),  # one final '.'
        ("Inc..", "inc."),  # only one
        ("  A   b\tC \n", "a b c"),  # whitespace collapsed, lower-cased
        ("", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


# -- typing values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12", 12), ("-3", -3), ("2.5", 2.5), ("1e3", 1000.0), (" 7 ", 7)],
)
def test_parse_number_accepts(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("text", ["1,000", "nan", "inf", "-Infinity", "1_000", "12 km", ""])
def test_parse_number_rejects(text):
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2004-01-05", (2004, 1, 5)),
        ("xxxx-09-xx", (-1, 9, -1)),
        ("xx-09-03", (-1, 9, 3)),
        ("2004-XX-xx", (2004, -1, -1)),
        ("2004-1-5", (2004, 1, 5)),
    ],
)
def test_parse_date_accepts(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["xxxx-xx-xx", "2004-13-01", "2004-01-32", "2004-01", "a-b-c"])
def test_parse_date_rejects(text):
    assert parse_date(text) is None


def test_to_value_types_from_canon_and_from_text():
    gold = to_value("13,845 ft", "13845.0")
    assert isinstance(gold, NumberValue) and gold.amount == 13845
    assert gold.normalized == "13,845 ft"  # the raw string is kept for string matching
    assert isinstance(to_value("April", "xxxx-04-xx"), DateValue)
    # A date with only the year becomes a Number.
    year = to_value("2004-xx-xx")
    assert isinstance(year, NumberValue) and year.amount == 2004
    # A prediction is typed from its own text only.
    assert isinstance(to_value("13,845 ft"), StringValue)
    assert isinstance(to_value("12.0"), NumberValue) and to_value("12.0").amount == 12
    assert isinstance(to_value("12.5").amount, float)


def test_to_value_list_deduplicates_by_official_equality():
    values = to_value_list(["2", "2.0", "two", "Two ", "2004-01-05", "2004-1-5"])
    assert [type(v).__name__ for v in values] == ["NumberValue", "StringValue", "DateValue"]


# -- matching and denotation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "canon", "pred", "passed"),
    [
        (["12,467"], ["12467.0"], "12467", True),  # number match
        (["12,467"], ["12467.0"], "12467.0000001", True),  # within 1e-6
        (["12,467"], ["12467.0"], "12467.001", False),
        (["12,467"], ["12467.0"], "12,467", True),  # normalised strings equal
        (["3"], ["3.0"], "3.0", True),
        (["3"], ["3.0"], "three", False),
        (["4220 m"], ["4220.0"], "4220 m", True),
        (["January 5, 2004"], ["2004-01-05"], "2004-01-05", True),  # date match
        (["January 5, 2004"], ["2004-01-05"], "2004-1-5", True),
        (["January 5, 2004"], ["2004-01-05"], "january 5, 2004", True),  # string match
        (["January 5, 2004"], ["2004-01-05"], "2004-01-06", False),
        (["January 5, 2004"], ["2004-01-05"], "xxxx-01-05", False),  # unknown fields count
        (["April"], ["xxxx-04-xx"], "xxxx-04-xx", True),
        (["April"], ["xxxx-04-xx"], "April", True),
        (["2004"], ["2004.0"], "2004-xx-xx", True),  # year-only date is a number
        (["Matti Yrjölä"], None, "matti yrjola", True),
        (["Matti Yrjölä"], None, "Matti Yrjölä (athlete)", True),
        (["Matti Yrjölä"], None, "“Matti Yrjölä.”", True),
        # The final '.' is dropped after the quote rule ran, so these quotes stay.
        (["Matti Yrjölä"], None, "“Matti Yrjölä”.", False),
        (["Matti Yrjölä"], None, "Matti", False),
    ],
)
def test_single_item_matching(gold, canon, pred, passed):
    assert score_wtq(gold, canon, pred).passed is passed


def test_multi_item_answers_are_sets():
    gold = ["Tony Coton", "David James"]
    assert score_wtq(gold, gold, ["David James", "Tony Coton"]).passed  # order irrelevant
    assert score_wtq(gold, gold, ["David James", "Tony Coton", "david james"]).passed  # dedup
    assert not score_wtq(gold, gold, ["David James"]).passed  # size differs
    assert not score_wtq(gold, gold, ["David James", "Tony Coton", "X"]).passed
    assert score_wtq(gold, gold, "Tony Coton\nDavid James\n").passed  # one item per line
    # The gold side is de-duplicated too.
    assert check_denotation(to_value_list(["a", "A"]), to_value_list(["a"]))


def test_multi_item_single_line_is_split_when_needed():
    gold = ["Tony Coton", "David James"]
    score = score_wtq(gold, gold, "Tony Coton, David James")
    assert score.passed and score.info == {"split_on": ","}
    assert score_wtq(gold, gold, "Tony Coton | David James").info == {"split_on": "|"}
    # A single gold item is never split: "Washington, D.C." stays one item.
    assert score_wtq(["Washington, D.C."], None, "Washington, D.C.").passed
    assert not score_wtq(["Washington"], None, "Washington, D.C.").passed


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (None, "no answer"),
        ({"a": 1}, "dict"),
        (True, "bool"),
        ([["nested"]], "list"),
        (["ok", None], "NoneType"),
        (object(), "object"),
        ("   ", "empty"),
        ([], "empty"),
    ],
)
def test_unexpected_answer_types_fail_with_detail(answer, detail):
    score = score_wtq(["8"], ["8.0"], answer)
    assert not score.passed and score.value == 0.0
    assert detail in score.details


def test_numbers_as_answers():
    assert score_wtq(["8"], ["8.0"], 8).passed
    assert score_wtq(["8"], ["8.0"], 8.0).passed
    assert score_wtq(["0.3"], ["0.3"], 0.1 + 0.2).passed
    assert score_wtq(["1960", "1961"], ["1960.0", "1961.0"], [1961, "1960"]).passed
    assert not score_wtq(["8"], ["8.0"], float("nan")).passed
    # numpy numbers (what pandas code returns) count as numbers; numpy bools do not.
    assert score_wtq(["8"], ["8.0"], np.int64(8)).passed
    assert score_wtq(["8", "9"], ["8.0", "9.0"], [np.float64(9.0), np.int32(8)]).passed
    assert "bool" in score_wtq(["8"], ["8.0"], np.bool_(True)).details


# -- the suite on the vendored data ----------------------------------------------------------


def test_load_splits_from_the_data(suite):
    train, test = suite.load("train"), suite.load("test")
    assert len(train.tasks) == 20 and len(test.tasks) == 10
    assert not train.bad_rows
    assert all(t.id.startswith("nt-") for t in train.tasks)
    assert all(t.id.startswith("nu-") for t in test.tasks)
    assert len(suite.load("all").tasks) == 30


def test_every_record_scores_its_own_gold(suite):
    for task in suite.load("all").tasks:
        canon = task.metadata["answers_canon"]
        assert suite.score(task, task.answers).passed, task.id
        assert suite.score(task, canon).passed, task.id  # canonical forms pass too
        assert suite.score(task, "\n".join(task.answers)).passed, task.id
        if len(task.answers) == 1:
            assert not suite.score(task, task.answers + ["zzz-extra"]).passed


def test_real_records(suite):
    by_id = {t.id: t for t in suite.load("all").tasks}
    assert suite.score(by_id["nt-13835"], "Matti Yrjola").passed
    assert suite.score(by_id["nu-749"], ["13845", "4220"]).passed
    assert not suite.score(by_id["nu-749"], ["13845"]).passed
    assert suite.score(by_id["nt-2289"], "2001-09-05").passed
    assert suite.score(by_id["nt-13119"], "april").passed
    assert suite.score(by_id["nu-2885"], ["Dil Ka Haal Sune Dilwaala", "Mera Juta Hai Japani"])
    assert suite.score(
        by_id["nt-8016"], [str(y) for y in (1982, 1974, 1971, 1970, 1969, 1967, 1962, 1961, 1960)]
    ).passed  # noqa: E501


def test_workspace_table_is_standard_csv(suite, tmp_path):
    tasks = suite.load("all").tasks
    escaped = [t for t in tasks if t.id == "nt-6311"][0]
    raw = [
        json.loads(line)
        for line in (VENDORED_DATA_DIR / "wikitablequestions/wtq_subset.jsonl").open()
        if '"nt-6311"' in line
    ][0]
    assert '\\"' in raw["table_csv"]  # this table uses the backslash escapes
    (path,) = suite.build_workspace(escaped, tmp_path / "ws")
    assert path == tmp_path / "ws" / "table.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows == parse_wtq_csv(raw["table_csv"])
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == rows[0] and len(frame) == len(rows) - 1


def test_summarise_shows_columns_and_rows(suite):
    task = suite.load_ids(["nt-13835"])[0]
    text = suite.summarise(task)
    assert task.question in text
    assert "'Name', 'Distance', 'Date', 'Location'" in text
    assert "Seppo Simola" in text and "20 rows x 5 columns" in text
    assert "Tepa Reinikainen" not in text  # only the first rows


def test_parse_wtq_csv_dialect():
    text = 'a,b\n"x \\"q\\"","back\\\\slash"\n'
    assert parse_wtq_csv(text) == [["a", "b"], ['x "q"', "back\\slash"]]
    with pytest.raises(ValueError, match="columns"):
        parse_wtq_csv("a,b\n1,2,3\n")


def test_malformed_rows_are_reported_and_skipped(tmp_path):
    good = json.loads((VENDORED_DATA_DIR / "wikitablequestions/wtq_subset.jsonl").open().readline())
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "nt-x1", "answers": []}),
        json.dumps({**good, "id": "nt-x2", "split": "dev"}),
        json.dumps({**good, "id": "nt-x3", "table_csv": "a,b\n1,2,3"}),
        json.dumps({**good, "id": "nt-x4", "answers_canon": ["1", "2"]}),
        json.dumps({k: v for k, v in good.items() if k != "question"} | {"id": "nt-x5"}),
        "[1, 2]",
        "",
        json.dumps(good),  # duplicate id
        json.dumps({**good, "id": "nt-ok2"}),
    ]
    folder = tmp_path / "wikitablequestions"
    folder.mkdir()
    (folder / "wtq_subset.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = get_suite("wikitq", data_dir=tmp_path).load("all")
    assert result.ids == [good["id"], "nt-ok2"]
    by_line = {e.line: e for e in result.bad_rows}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "invalid JSON" in by_line[2].message
    assert by_line[3].id == "nt-x1" and "answers" in by_line[3].message
    assert "split" in by_line[4].message
    assert "columns" in by_line[5].message
    assert "answers_canon" in by_line[6].message
    assert "question" in by_line[7].message
    assert "JSON object" in by_line[8].message
    assert by_line[10].message == "duplicate id"
    assert str(by_line[3]).startswith("wtq_subset.jsonl:3 (nt-x1): ")


def test_score_for_string_io_roundtrip():
    # The table writer quotes fields so commas and quotes survive.
    from toolkit.tasks.wikitq import to_standard_csv

    rows = [["a", "b"], ['x, "y"', "z\nw"]]
    assert list(csv.reader(io.StringIO(to_standard_csv(rows)))) == rows
