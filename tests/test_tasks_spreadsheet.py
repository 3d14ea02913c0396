import datetime as dt
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils import get_column_letter

from toolkit.tasks import VENDORED_DATA_DIR, RecalcError, TaskError, get_suite
from toolkit.tasks import recalc as recalc_module
from toolkit.tasks import spreadsheet as spreadsheet_module
from toolkit.tasks.cell_ranges import (
    CellRange,
    column_index,
    column_letters,
    parse_answer_position,
)
from toolkit.tasks.spreadsheet import (
    cells_equal,
    compare_workbooks,
    transform_value,
    uncached_formula_cells,
)

HAVE_SOFFICE = recalc_module.soffice_path() is not None
# In CI LibreOffice is installed by scripts/install_system_deps.sh, so these tests must run.
needs_soffice = pytest.mark.skipif(
    not HAVE_SOFFICE and not os.environ.get("CI"),
    reason="LibreOffice (soffice) is not installed; run scripts/install_system_deps.sh",
)


# -- answer_position parsing ----------------------------------------------------------------


def spans(text):
    return [(r.sheet, str(r).split("!")[-1]) for r in parse_answer_position(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("E7:E9", [(None, "E7:E9")]),
        ("B6", [(None, "B6")]),
        ("CC2:CC33", [(None, "CC2:CC33")]),
        ("'Sheet1'!A1:B5", [("Sheet1", "A1:B5")]),
        ("'Sheet two'!E2:E279", [("Sheet two", "E2:E279")]),
        ("Analyse'!D5:K12", [("Analyse", "D5:K12")]),  # upstream's stray quote
        ("summary Limits'!A1:D7", [("summary Limits", "A1:D7")]),
        ("'ورقة1'!H2:L4", [("ورقة1", "H2:L4")]),
        ("'SHEET1'!B2:B8,'SHEET2'!B2:B7", [("SHEET1", "B2:B8"), ("SHEET2", "B2:B7")]),
        (
            "'Sheet1!'A1:A50,'Sheet2!'A1:E20,'Sheet3!'A1:A50'",
            [("Sheet1", "A1:A50"), ("Sheet2", "A1:E20"), ("Sheet3", "A1:A50")],
        ),
        ("'a,b'!A1,C3", [("a,b", "A1"), (None, "C3")]),  # comma inside a sheet name
        ("Sheet1!$A$1:$B$2", [("Sheet1", "A1:B2")]),
        ("B2:A1", [(None, "A1:B2")]),  # corners in any order
        (" C1 , D2:D3 ", [(None, "C1"), (None, "D2:D3")]),
    ],
)
def test_parse_answer_position(text, expected):
    assert spans(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "Sheet1!", "A0", "1A", "A1:B", "'x'!", "!A1"])
def test_parse_answer_position_rejects(text):
    with pytest.raises(TaskError):
        parse_answer_position(text)


def test_range_cells_and_columns():
    (r,) = parse_answer_position("A1:B2")
    assert list(r.cells()) == ["A1", "B1", "A2", "B2"] and r.size == 4
    assert column_index("A") == 1 and column_index("Z") == 26 and column_index("AA") == 27
    assert column_index("CC") == 81 and column_letters(81) == "CC"
    assert all(column_index(column_letters(i)) == i for i in range(1, 20000, 7))
    with pytest.raises(TaskError, match="over 1000000 cells"):
        parse_answer_position("A1:XFD1048576")
    assert str(CellRange(sheet="S", min_col=1, min_row=1, max_col=1, max_row=1)) == "'S'!A1"


# -- official value comparison ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (2.345, 2.35 if round(2.345, 2) == 2.35 else 2.34),
        (True, 1.0),  # bool is an int in the official check
        ("12.5", 12.5),
        (" 7 ", 7.0),
        ("abc", "abc"),
        (dt.datetime(2021, 7, 20), 44397.0),
        (dt.datetime(2021, 7, 20, 18, 0), 44398.0),  # rounded to the day
        (dt.time(9, 30), "09:30"),
        (None, None),
    ],
)
def test_transform_value(value, expected):
    assert transform_value(value) == expected


@pytest.mark.parametrize(
    ("gold", "output", "equal"),
    [
        (None, "", True),
        ("", None, True),
        (None, None, True),
        (5, "5", True),  # a numeric string equals the number
        (5, 5.001, True),  # 2 decimal places
        (5, 5.006, False),
        ("a", "A", False),
        (5, "five", False),
        (dt.datetime(2021, 7, 20), 44397, True),
        (dt.date(2021, 7, 20), 44397, False),  # a date (not datetime) is not transformed
        (0, None, False),
        (float("nan"), float("nan"), False),
    ],
)
def test_cells_equal(gold, output, equal):
    assert cells_equal(gold, output) is equal


def make_book(path: Path, sheets: dict[str, dict[str, object]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, cells in sheets.items():
        ws = wb.create_sheet(name)
        for ref, value in cells.items():
            ws[ref] = value
    wb.save(path)
    return path


def test_compare_workbooks(tmp_path):
    gold = make_book(tmp_path / "g.xlsx", {"Data": {"A1": 1, "A2": "x"}, "Other": {"B1": 2}})
    same = make_book(tmp_path / "s.xlsx", {"Data": {"A1": "1.0", "A2": "x"}, "Other": {"B1": 2}})
    wrong = make_book(tmp_path / "w.xlsx", {"Data": {"A1": 1, "A2": "y"}})
    renamed = make_book(tmp_path / "r.xlsx", {"Sheet": {"A1": 1, "A2": "x"}})
    both = parse_answer_position("A1:A2,'Other'!B1")
    assert compare_workbooks(gold, same, both) == (True, "")
    passed, message = compare_workbooks(gold, wrong, parse_answer_position("A1:A2"))
    assert not passed and message == "value differs at 'Data'!A2: gold 'x', got 'y'"
    # A bare range means the gold's first sheet; the output must have a sheet of that name.
    passed, message = compare_workbooks(gold, renamed, parse_answer_position("A1"))
    assert not passed and "worksheet 'Data' not found" in message
    passed, message = compare_workbooks(gold, wrong, both)
    assert not passed
    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"not a zip")
    passed, message = compare_workbooks(gold, garbage, both)
    assert not passed and "cannot open output" in message
    with pytest.raises(TaskError, match="no worksheet 'Nope'"):
        compare_workbooks(gold, same, parse_answer_position("'Nope'!A1"))


def test_uncached_formula_cells(tmp_path):
    book = make_book(tmp_path / "f.xlsx", {"S": {"A1": 2, "A2": 3, "A3": "=A1+A2"}})
    assert uncached_formula_cells(book, parse_answer_position("A1:A3")) == ["'S'!A3"]
    assert uncached_formula_cells(book, parse_answer_position("A1:A2")) == []


# -- the suite --------------------------------------------------------------------------------


def make_dataset(root: Path, answer_position: str = "'S'!A1:A3", cases: int = 2) -> Path:
    """A tiny SpreadsheetBench-shaped data root: A1:A2 are inputs, A3 their sum."""
    folder = root / "spreadsheetbench" / "spreadsheet" / "t1"
    folder.mkdir(parents=True)
    test_cases = []
    for n in range(1, cases + 1):
        make_book(folder / f"{n}_t1_input.xlsx", {"S": {"A1": n, "A2": 10}})
        make_book(folder / f"{n}_t1_answer.xlsx", {"S": {"A1": n, "A2": 10, "A3": n + 10}})
        test_cases.append(
            {
                "input": f"spreadsheet/t1/{n}_t1_input.xlsx",
                "answer": f"spreadsheet/t1/{n}_t1_answer.xlsx",
            }
        )
    record = {
        "id": "t1",
        "instruction": "Put the sum of A1 and A2 in A3.",
        "instruction_type": "Cell-Level Manipulation",
        "answer_position": answer_position,
        "spreadsheet_path": "spreadsheet/t1",
        "test_cases": test_cases,
    }
    (root / "spreadsheetbench" / "dataset.json").write_text(json.dumps([record]))
    return root


def write_outputs(workspace: Path, values: list[object]) -> None:
    for n, value in enumerate(values, start=1):
        wb = openpyxl.load_workbook(workspace / f"{n}_input.xlsx")
        wb["S"]["A3"] = value
        wb.save(workspace / f"{n}_output.xlsx")


@pytest.fixture
def tiny(tmp_path):
    root = make_dataset(tmp_path / "data")
    suite = get_suite("spreadsheet", data_dir=root, recalculate="never", cache_dir=tmp_path / "c")
    (task,) = suite.load("all").tasks
    workspace = tmp_path / "ws"
    assert [p.name for p in suite.build_workspace(task, workspace)] == [
        "1_input.xlsx",
        "2_input.xlsx",
    ]
    return suite, task, workspace


def test_score_literal_values_soft_and_hard(tiny):
    suite, task, workspace = tiny
    write_outputs(workspace, [11, 12])
    score = suite.score(task, workspace)
    assert score.passed and score.value == 1.0 and score.details == "2/2 test cases pass"
    write_outputs(workspace, [11, 99])
    score = suite.score(task, workspace)
    assert not score.passed and score.value == 0.5  # soft = 1/2, hard = fail
    assert "case 2: value differs at 'S'!A3: gold 12, got 99" in score.details
    assert [c["passed"] for c in score.info["cases"]] == [True, False]


def test_answer_forms(tiny):
    suite, task, workspace = tiny
    write_outputs(workspace, [11, 12])
    outs = [workspace / "1_output.xlsx", workspace / "2_output.xlsx"]
    assert suite.score(task, str(workspace)).passed
    assert suite.score(task, outs).passed
    assert suite.score(task, tuple(map(str, outs))).passed
    assert suite.score(task, {1: outs[0], "2": outs[1]}).passed
    assert suite.score(task, {"1_output.xlsx": outs[0], "2_output.xlsx": outs[1]}).passed
    partial = suite.score(task, {1: outs[0]})
    assert partial.value == 0.5 and "case 2: no output given" in partial.details
    missing = suite.score(task, [outs[0], workspace / "nope.xlsx"])
    # The file's name, not its temporary folder (a trial's reason named /dev/shm/t2s-sandbox-...).
    assert missing.details == "1/2 test cases pass; case 2: nope.xlsx was not written"
    (workspace / "2_output.xlsx").unlink()
    assert "case 2: 2_output.xlsx was not written" in suite.score(task, workspace).details


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (None, "NoneType"),
        (42, "int"),
        (True, "bool"),
        (["only-one.xlsx"], "2 paths"),
        ([1, 2], "2 paths"),
        ({1: 5}, "not a path"),
    ],
)
def test_unexpected_answers_fail_with_detail(tiny, answer, detail):
    suite, task, _ = tiny
    score = suite.score(task, answer)
    assert not score.passed and score.value == 0.0 and detail in score.details


def test_one_file_for_several_cases_is_refused(tiny):
    suite, task, workspace = tiny
    write_outputs(workspace, [11, 12])
    score = suite.score(task, workspace / "1_output.xlsx")
    assert not score.passed and "one file" in score.details
    score = suite.score(task, workspace / "gone")
    assert not score.passed and "does not exist" in score.details


def test_garbage_output_fails_that_case_only(tiny):
    suite, task, workspace = tiny
    write_outputs(workspace, [11, 12])
    (workspace / "2_output.xlsx").write_bytes(b"garbage")
    score = suite.score(task, workspace)
    assert score.value == 0.5 and "cannot open output" in score.details


def test_missing_soffice_with_uncached_formulas_is_a_clear_error(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data")
    suite = get_suite("spreadsheet", data_dir=root, cache_dir=tmp_path / "c")  # auto
    (task,) = suite.load("all").tasks
    workspace = tmp_path / "ws"
    suite.build_workspace(task, workspace)
    write_outputs(workspace, ["=A1+A2", "=A1+A2"])
    monkeypatch.setattr(spreadsheet_module, "soffice_path", lambda: None)
    monkeypatch.setattr(recalc_module, "soffice_path", lambda: None)
    with pytest.raises(
        RecalcError, match=r"output of case 1 has 1 formula cell.*'S'!A3.*LibreOffice"
    ):
        suite.score(task, workspace)
    # Literal values need no recalculation: scoring works without LibreOffice.
    write_outputs(workspace, [11, 12])
    assert suite.score(task, workspace).passed
    # "always" insists on LibreOffice.
    always = get_suite("spreadsheet", data_dir=root, recalculate="always", cache_dir=tmp_path)
    with pytest.raises(RecalcError, match="not installed"):
        always.score(task, workspace)
    # "never" compares cached values as they are: an uncached formula reads as empty.
    never = get_suite("spreadsheet", data_dir=root, recalculate="never", cache_dir=tmp_path)
    write_outputs(workspace, ["=A1+A2", 12])
    assert never.score(task, workspace).value == 0.5


def test_vendored_gold_with_uncached_formulas_needs_soffice(tmp_path, monkeypatch):
    monkeypatch.setattr(spreadsheet_module, "soffice_path", lambda: None)
    suite = get_suite("spreadsheet", data_dir=VENDORED_DATA_DIR, cache_dir=tmp_path)
    (task,) = suite.load_ids(["52220"])
    answers = [c["answer"] for c in task.metadata["test_cases"]]
    with pytest.raises(RecalcError, match=r"gold answer of case 1 .*'Sheet1'!C3"):
        suite.score(task, answers)


def test_vendored_tasks_load_and_summarise(tmp_path):
    suite = get_suite("spreadsheet", data_dir=VENDORED_DATA_DIR, cache_dir=tmp_path)
    result = suite.load("all")
    assert sorted(result.ids) == ["170-13", "302-1", "52220"] and not result.bad_rows
    assert suite.load("train").ids == ["302-1"]
    assert sorted(suite.load("test").ids) == ["170-13", "52220"]
    task = suite.load_ids(["52220"])[0]
    text = suite.summarise(task)
    assert "checked cells: C2:C3" in text and "1_input.xlsx -> 1_output.xlsx" in text
    assert "Sheet 'Sheet1'" in text and "Last intervention" in text
    written = suite.build_workspace(task, tmp_path / "ws")
    assert [p.name for p in written] == ["1_input.xlsx", "2_input.xlsx", "3_input.xlsx"]
    assert not any("answer" in p.name for p in (tmp_path / "ws").iterdir())  # gold stays out


def test_summary_shows_each_sheet_as_it_is_and_says_what_it_cuts(tmp_path):
    """A trial: a 3-column sheet was shown with 10 cells a row (read-only rows are padded to
    max_col), and a long sheet was cut without saying so (WikiTQ says 'First 5 rows')."""
    root = make_dataset(tmp_path / "data", cases=1)
    long = {f"{c}{r}": f"{c}{r}" for c in "ABC" for r in range(1, 9)}
    wide = {f"{get_column_letter(c)}1": c for c in range(1, 13)}
    folder = root / "spreadsheetbench" / "spreadsheet" / "t1"
    make_book(folder / "1_t1_input.xlsx", {"Long": long, "Wide": wide, "Small": {"A1": 1}})
    suite = get_suite("spreadsheet", data_dir=root, recalculate="never", cache_dir=tmp_path / "c")
    (task,) = suite.load("all").tasks
    lines = suite.summarise(task).splitlines()
    at = lines.index("Sheet 'Long' (8 rows x 3 columns), first 5 rows:")
    assert lines[at + 1 : at + 6] == [f"A{r} | B{r} | C{r}" for r in range(1, 6)]
    assert lines[at + 6 :] == [
        "Sheet 'Wide' (1 rows x 12 columns), first 10 columns:",
        " | ".join(str(c) for c in range(1, 11)),
        "Sheet 'Small' (1 rows x 1 columns):",
        "1",
    ]


def test_malformed_records(tmp_path):
    root = make_dataset(tmp_path / "data")
    dataset = root / "spreadsheetbench" / "dataset.json"
    good = json.loads(dataset.read_text())[0]
    records = [
        good,
        {**good, "id": "b1", "answer_position": "Sheet1!"},
        {**good, "id": "b2", "test_cases": [{"input": "spreadsheet/t1/none.xlsx", "answer": "x"}]},
        {**good, "id": "b3", "test_cases": []},
        {k: v for k, v in good.items() if k != "instruction"} | {"id": "b4"},
        {**good, "id": "b5", "test_cases": [{"input": "../../../etc/passwd", "answer": "x"}]},
        "not an object",
    ]
    dataset.write_text(json.dumps(records))
    suite = get_suite("spreadsheet", data_dir=root, recalculate="never")
    result = suite.load("all")
    assert result.ids == ["t1"]
    errors = {e.line: e.message for e in result.bad_rows}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7]
    assert "cell reference" in errors[2] or "sheet" in errors[2]
    assert "missing" in errors[3]
    assert "test_cases" in errors[4]
    assert "instruction" in errors[5]
    assert "leaves the data folder" in errors[6]
    dataset.write_text("{}")
    with pytest.raises(TaskError, match="JSON list"):
        suite.load("all")
    with pytest.raises(TaskError, match="recalculate must be"):
        get_suite("spreadsheet", data_dir=root, recalculate="sometimes")


# -- LibreOffice (real soffice calls; a handful, each ~1-4 s) ---------------------------------


@needs_soffice
def test_formula_outputs_are_recalculated_like_the_official_pipeline(tmp_path):
    suite = get_suite("spreadsheet", data_dir=VENDORED_DATA_DIR, cache_dir=tmp_path / "cache")
    (task,) = suite.load_ids(["52220"])
    workspace = tmp_path / "ws"
    suite.build_workspace(task, workspace)
    for n, formula in [(1, '=IF(OR(A{r}="",B{r}=""),"",A{r}+B{r})'), (2, "=A{r}+1")]:
        wb = openpyxl.load_workbook(workspace / f"{n}_input.xlsx")
        for r in (2, 3):
            wb.active[f"C{r}"] = formula.format(r=r)
        wb.save(workspace / f"{n}_output.xlsx")
    shutil.copy(workspace / "3_input.xlsx", workspace / "3_output.xlsx")  # did nothing
    # Without recalculation the formula outputs hold no values at all.
    assert uncached_formula_cells(workspace / "1_output.xlsx", parse_answer_position("C2:C3"))
    score = suite.score(task, workspace)
    assert [c["passed"] for c in score.info["cases"]] == [True, False, False]
    assert all(c["recalculated"] for c in score.info["cases"])
    assert "case 2: value differs at 'Sheet1'!C2" in score.details
    assert score.value == pytest.approx(1 / 3) and not score.passed
    # The recalculated gold answers were cached by content hash.
    assert len(list((tmp_path / "cache").glob("*.xlsx"))) == 3


def _stale_workbook(path: Path) -> Path:
    """A workbook whose formula A3 = A1+A2 (= 5) carries a stale cached value of 99."""
    make_book(path, {"S": {"A1": 2, "A2": 3, "A3": "=A1+A2"}})
    with zipfile.ZipFile(path) as zin:
        items = {name: zin.read(name) for name in zin.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    xml = items[sheet].decode()
    xml, count = re.subn(r"<f>A1\+A2</f>(<v\s*/>|<v></v>)?", "<f>A1+A2</f><v>99</v>", xml)
    assert count == 1
    items[sheet] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in items.items():
            zout.writestr(name, data)
    return path


@needs_soffice
def test_stale_cached_values_are_recalculated(tmp_path):
    stale = _stale_workbook(tmp_path / "stale.xlsx")
    assert openpyxl.load_workbook(stale, data_only=True)["S"]["A3"].value == 99
    twin = tmp_path / "b" / "stale.xlsx"  # same file name: must not collide
    twin.parent.mkdir()
    make_book(twin, {"S": {"A1": 1, "A2": 1, "A3": "=A1*10"}})
    out = recalc_module.recalculate([stale, twin], tmp_path / "out")
    assert openpyxl.load_workbook(out[0], data_only=True)["S"]["A3"].value == 5
    assert openpyxl.load_workbook(out[1], data_only=True)["S"]["A3"].value == 10
    assert openpyxl.load_workbook(stale, data_only=True)["S"]["A3"].value == 99  # input kept


@needs_soffice
def test_recalculate_reports_files_it_cannot_convert(tmp_path):
    bad = tmp_path / "bad.xlsx"  # a zip, but not a workbook: soffice exits 0 and writes nothing
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(RecalcError, match="could not open or convert.*bad.xlsx"):
        recalc_module.recalculate([bad], tmp_path / "out")
    with pytest.raises(RecalcError, match="does not exist"):
        recalc_module.recalculate([tmp_path / "missing.xlsx"], tmp_path / "out")


def test_recalculate_without_soffice_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(recalc_module, "soffice_path", lambda: None)
    with pytest.raises(RecalcError, match="libreoffice-calc-nogui"):
        recalc_module.recalculate([tmp_path / "x.xlsx"], tmp_path)


def test_profile_sets_recalc_mode(tmp_path):
    recalc_module.write_profile(tmp_path / "p")
    text = (tmp_path / "p" / "user" / "registrymodifications.xcu").read_text()
    assert "/org.openoffice.Office.Calc/Formula/Load" in text
    assert 'oor:name="OOXMLRecalcMode"' in text and "<value>0</value>" in text


@needs_soffice
def test_unconvertible_output_fails_its_case_and_the_others_still_recalculate(tmp_path):
    root = make_dataset(tmp_path / "data", cases=2)
    suite = get_suite("spreadsheet", data_dir=root, cache_dir=tmp_path / "c")
    (task,) = suite.load("all").tasks
    workspace = tmp_path / "ws"
    suite.build_workspace(task, workspace)
    write_outputs(workspace, ["=A1+A2", 0])
    with zipfile.ZipFile(workspace / "2_output.xlsx", "w") as zf:  # a zip, not a workbook
        zf.writestr("hello.txt", "hi")
    score = suite.score(task, workspace)
    assert [c["passed"] for c in score.info["cases"]] == [True, False]
    assert [c["recalculated"] for c in score.info["cases"]] == [True, False]
    assert "case 2: cannot open output" in score.details


@needs_soffice
def test_check_flags_a_gold_workbook_whose_stored_values_libreoffice_recalculates(tmp_path):
    """tasks check: a stale cached gold value is a gold its own scorer rejects."""
    from toolkit.tasks.check import check_suite

    root = make_dataset(tmp_path / "data", cases=2)
    answer = root / "spreadsheetbench" / "spreadsheet" / "t1" / "2_t1_answer.xlsx"
    _stale_workbook(answer)  # A1=2, A2=3, A3 = A1+A2 stored as 99
    suite = get_suite("spreadsheet", data_dir=root, cache_dir=tmp_path / "cache")
    report = check_suite(suite)
    assert not report.ok and report.checked == 1
    (failure,) = report.failures
    assert failure.id == "t1"
    assert "case 2: value differs at 'S'!A3: gold 99, got 5" in failure.details
    assert failure.details.startswith("1/2 test cases pass")

    make_book(answer, {"S": {"A1": 2, "A2": 3, "A3": "=A1+A2"}})  # no cached value: recalculated
    assert check_suite(suite).ok
