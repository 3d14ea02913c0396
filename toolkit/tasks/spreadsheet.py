"""SpreadsheetBench: manipulate an .xlsx workbook; cells at ``answer_position`` are checked.

Data: ``spreadsheetbench/dataset.json`` + ``spreadsheet/<id>/`` (3 input/answer pairs per
task). The workspace holds ``1_input.xlsx``, ``2_input.xlsx``... and the agent writes
``1_output.xlsx``, ``2_output.xlsx``... Scoring follows ``evaluation/evaluation.py``: both
workbooks are read with openpyxl ``data_only=True``, each cell goes through
:func:`transform_value` and is compared with :func:`cells_equal`. ``Score.value`` is the
benchmark's *soft* score (fraction of passing test cases), ``Score.passed`` the *hard* one.

Recalculation (``recalculate=``): ``"auto"`` (default) recalculates every output with
LibreOffice when ``soffice`` is installed, as the official pipeline does, and otherwise raises
:class:`~toolkit.tasks.recalc.RecalcError` when a checked cell holds a formula without a
cached value (so a missing LibreOffice is never a silent fail); ``"always"`` requires
LibreOffice; ``"never"`` compares cached values as they are. Gold answers with uncached
formulas (12 upstream tasks) are recalculated once and cached by content hash.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from toolkit.tasks.base import Score, Suite, Task, TaskError, TaskFile
from toolkit.tasks.cell_ranges import CellRange, parse_answer_position
from toolkit.tasks.datadir import resolve_data_dir
from toolkit.tasks.recalc import INSTALL_HINT, RecalcError, recalculate, soffice_path
from toolkit.tasks.splits import hash_split

# openpyxl warns about workbook features it does not support: not our output. Ignored for
# good, not with catch_warnings around each load: scoring runs in threads, and overlapping
# catch_warnings blocks restore each other's filters, which left "ignore everything" in
# place for the rest of the process.
warnings.filterwarnings("ignore", module="openpyxl")

DATA_DIR = "spreadsheetbench"
DATASET_FILE = "dataset.json"
RecalcMode = Literal["auto", "always", "never"]


def transform_value(value: Any) -> Any:
    """The official ``transform_value``: numbers (bools too) and numeric strings become
    ``round(float, 2)``, datetimes the Excel serial day rounded to 0 dp, times ``'HH:MM'``.
    """
    if isinstance(value, int | float):
        return round(float(value), 2)
    if isinstance(value, dt.time):
        return str(value)[:-3]
    if isinstance(value, dt.datetime):
        delta = value - dt.datetime(1899, 12, 30)
        return round(delta.days + delta.seconds / 86400.0, 0)
    if isinstance(value, str):
        try:
            return round(float(value), 2)
        except ValueError:
            return value
    return value


def cells_equal(gold: Any, output: Any) -> bool:
    """The official ``compare_cell_value``: None equals "", different types differ."""
    a, b = transform_value(gold), transform_value(output)
    if (a is None or a == "") and (b is None or b == ""):
        return True
    if type(a) is not type(b):
        return False
    return bool(a == b)


class TestCase(BaseModel):
    """One input/answer pair of a task, with the workspace names the agent sees."""

    __test__ = False  # not a pytest test class

    number: int
    input: str = Field(description="Workspace name of the input, e.g. '1_input.xlsx'.")
    output: str = Field(description="Workspace name the agent writes, e.g. '1_output.xlsx'.")
    answer: str = Field(description="Absolute path of the gold answer workbook.")


class _Record(BaseModel):
    """A dataset.json record (only the fields scoring needs are required)."""

    id: str | int
    instruction: str
    instruction_type: str = ""
    answer_position: str
    answer_sheet: str | None = None
    data_position: str | None = None
    test_cases: list[dict[str, str]] = Field(min_length=1)


class CaseResult(BaseModel):
    """The verdict on one test case."""

    case: int
    passed: bool
    message: str = ""
    recalculated: bool = False


class SpreadsheetSuite(Suite):
    """SpreadsheetBench tasks, scored cell by cell after LibreOffice recalculation."""

    name = "spreadsheet"
    description = (
        "Spreadsheet manipulation (SpreadsheetBench): each task is an instruction about Excel "
        "workbooks given as input .xlsx files in the working directory. The agent applies the "
        "change to each input workbook with Python (openpyxl) and saves it under the output "
        "name; the cells named by answer_position are compared with the gold workbooks after "
        "recalculation."
    )
    splits = ("train", "test", "all")
    scores_written_files = True  # the output workbooks, written by the agent's code

    def __init__(
        self,
        data_dir: str | Path | None = None,
        recalculate: RecalcMode = "auto",
        cache_dir: str | Path | None = None,
        timeout_s: float = 180.0,
    ):
        """Read ``<data root>/spreadsheetbench/dataset.json``.

        Args:
            data_dir: data root (see :func:`~toolkit.tasks.datadir.resolve_data_dir`).
            recalculate: ``auto``, ``always`` or ``never`` (module docstring).
            cache_dir: where recalculated gold answers are kept (default: user cache dir).
            timeout_s: limit for one LibreOffice call.
        """
        if recalculate not in ("auto", "always", "never"):
            raise TaskError(f"recalculate must be auto, always or never, got {recalculate!r}")
        self.data_dir = resolve_data_dir(data_dir)
        self.root = self.data_dir / DATA_DIR
        self.recalculate: RecalcMode = recalculate
        self.timeout_s = timeout_s
        if cache_dir is None:
            import platformdirs

            cache_dir = Path(platformdirs.user_cache_dir("trace2skill")) / "recalc"
        self.cache_dir = Path(cache_dir)

    # -- loading -------------------------------------------------------------------------

    def source_files(self) -> list[Path]:
        """``dataset.json`` (the workbooks are named by it)."""
        return [self.root / DATASET_FILE]

    def iter_rows(self) -> Iterator[tuple[str, int, Any]]:
        """Yield each record of ``dataset.json`` (1-based record number)."""
        path = self.root / DATASET_FILE
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaskError(f"data file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TaskError(f"cannot read data file {path}: {exc}") from None
        if not isinstance(records, list):
            raise TaskError(f"{path} must hold a JSON list of task records")
        for number, record in enumerate(records, start=1):
            yield DATASET_FILE, number, record

    def parse_row(self, raw: Any) -> Task:
        """Build a task; every test-case file must exist and answer_position must parse."""
        record = _Record.model_validate(raw)
        try:
            parse_answer_position(record.answer_position)
        except TaskError as exc:
            raise ValueError(str(exc)) from None
        cases: list[TestCase] = []
        files: list[TaskFile] = []
        for number, pair in enumerate(record.test_cases, start=1):
            paths = {}
            for key in ("input", "answer"):
                if key not in pair:
                    raise ValueError(f"test case {number} has no {key!r}")
                path = (self.root / pair[key]).resolve()
                if not path.is_relative_to(self.root.resolve()):
                    raise ValueError(f"test case {number} {key} leaves the data folder")
                if not path.is_file():
                    raise ValueError(f"test case {number} {key} file is missing: {pair[key]}")
                paths[key] = path
            suffix = paths["input"].suffix.lower()
            case = TestCase(
                number=number,
                input=f"{number}_input{suffix}",
                output=f"{number}_output{suffix}",
                answer=str(paths["answer"]),
            )
            cases.append(case)
            files.append(TaskFile(path=case.input, source=str(paths["input"])))
        task_id = str(record.id)
        return Task(
            id=task_id,
            suite=self.name,
            split=hash_split(task_id),
            question=record.instruction,
            files=files,
            metadata={
                "instruction_type": record.instruction_type,
                "answer_position": record.answer_position,
                "answer_sheet": record.answer_sheet,
                "data_position": record.data_position,
                "test_cases": [c.model_dump() for c in cases],
            },
        )

    # -- prompt --------------------------------------------------------------------------

    def summarise(self, task: Task, max_rows: int = 5, max_cols: int = 10) -> str:
        """Instruction, files to read and write, checked cells, a preview of input 1."""
        import openpyxl

        cases = [TestCase.model_validate(c) for c in task.metadata["test_cases"]]
        lines = [
            f"Instruction: {task.question}",
            f"Type: {task.metadata.get('instruction_type') or 'unknown'}; "
            f"checked cells: {task.metadata['answer_position']}",
            "Apply the same change to each input workbook and save it under the output name: "
            + ", ".join(f"{c.input} -> {c.output}" for c in cases),
        ]
        source = next(f.source for f in task.files if f.path == cases[0].input)
        wb = openpyxl.load_workbook(source, read_only=True)
        try:
            for ws in wb.worksheets:
                n_rows, n_cols = ws.max_row, ws.max_column  # None: the file records no size
                # Read-only sheets pad every row to max_col: a 3-column sheet showed 10 cells.
                cols = min(max_cols, n_cols) if n_cols else max_cols
                rows = list(ws.iter_rows(max_row=max_rows, max_col=cols, values_only=True))
                cut = [
                    f"first {shown} {what}"
                    for shown, total, what in (
                        (len(rows), n_rows, "rows"),
                        (cols, n_cols, "columns"),
                    )
                    if total and total > shown
                ]
                lines.append(
                    f"Sheet {ws.title!r} ({n_rows} rows x {n_cols} columns)"
                    + (f", {', '.join(cut)}:" if cut else ":")
                )
                for row in rows:
                    lines.append(" | ".join("" if v is None else str(v)[:30] for v in row))
        finally:
            wb.close()
        return "\n".join(lines)

    # -- scoring -------------------------------------------------------------------------

    def reference_answers(self, task: Task) -> list[object]:
        """The answer workbooks themselves, as if an agent had written them.

        They are recalculated like an agent's output, so a task whose cached gold values
        LibreOffice computes differently fails here, as would an agent writing the same
        formulas.
        """
        cases = [TestCase.model_validate(c) for c in task.metadata["test_cases"]]
        return [{case.number: Path(case.answer) for case in cases}]

    def score(self, task: Task, answer: object) -> Score:
        """Compare the agent's output workbooks with the gold answers, case by case.

        ``answer`` is the workspace directory (outputs named ``<n>_output.xlsx``), a list of
        output paths in case order, a dict from case number to path, or one path for a
        single-case task.

        Raises:
            RecalcError: LibreOffice is needed (formula cells without cached values) but
                missing or failing; a scoring environment problem, not a wrong answer.
        """
        cases = [TestCase.model_validate(c) for c in task.metadata["test_cases"]]
        ranges = parse_answer_position(task.metadata["answer_position"])
        outputs = _output_paths(cases, answer)
        if isinstance(outputs, str):
            return Score.fail(outputs)
        results: dict[int, CaseResult] = {}
        present: dict[int, Path] = {}
        for case, path in zip(cases, outputs, strict=True):
            if path is None or not path.is_file():
                # The file's name: its folder is the sandbox's temporary one, gone by now.
                message = "no output given" if path is None else f"{path.name} was not written"
                results[case.number] = CaseResult(case=case.number, passed=False, message=message)
            else:
                present[case.number] = path
        with tempfile.TemporaryDirectory(prefix="trace2skill-score-") as tmp:
            checked, golds, recalculated = self._resolve(present, cases, ranges, Path(tmp))
            for case in cases:
                if case.number not in checked:
                    continue
                passed, message = compare_workbooks(
                    golds[case.number], checked[case.number], ranges
                )
                results[case.number] = CaseResult(
                    case=case.number,
                    passed=passed,
                    message=message,
                    recalculated=case.number in recalculated,
                )
        ordered = [results[c.number] for c in cases]
        n_passed = sum(r.passed for r in ordered)
        failures = [f"case {r.case}: {r.message}" for r in ordered if not r.passed]
        details = f"{n_passed}/{len(ordered)} test cases pass"
        if failures:
            details += "; " + "; ".join(failures)
        return Score(
            passed=n_passed == len(ordered),
            value=n_passed / len(ordered),
            details=details,
            info={"cases": [r.model_dump() for r in ordered]},
        )

    def _resolve(
        self,
        present: dict[int, Path],
        cases: Sequence[TestCase],
        ranges: list[CellRange],
        tmp: Path,
    ) -> tuple[dict[int, Path], dict[int, Path], set[int]]:
        """The outputs and gold answers to compare, recalculated as the mode asks.

        Every output, and every gold answer whose checked cells lack cached values (not yet
        in the cache), goes through one LibreOffice call.

        Returns:
            ``(outputs, golds, numbers of the recalculated outputs)``.
        """
        answers = {c.number: Path(c.answer) for c in cases}
        golds = dict(answers)
        stale: dict[int, Path] = {}  # gold answers to recalculate -> their cache path
        for number, answer in answers.items():
            if self.recalculate == "never" or not uncached_formula_cells(answer, ranges):
                continue
            cached = self.cache_dir / f"{hashlib.sha256(answer.read_bytes()).hexdigest()}.xlsx"
            if cached.is_file():
                golds[number] = cached
            else:
                stale[number] = cached
        use_soffice = self.recalculate == "always" or (
            self.recalculate == "auto" and soffice_path() is not None
        )
        if not use_soffice:
            if self.recalculate == "auto":
                for number in stale:
                    _require_cached(answers[number], ranges, f"gold answer of case {number}")
                for number, path in present.items():
                    _require_cached(path, ranges, f"output of case {number}")
            return dict(present), golds, set()
        # A file that is not even a zip is no workbook: LibreOffice would import it as text,
        # so it is compared as is and openpyxl reports it, as in the official pipeline.
        jobs = [("output", n, p) for n, p in sorted(present.items()) if zipfile.is_zipfile(p)]
        jobs += [("gold", n, answers[n]) for n in sorted(stale)]
        done = self._recalculate_each([path for _, _, path in jobs], tmp) if jobs else []
        outputs: dict[int, Path] = dict(present)
        recalculated: set[int] = set()
        for (kind, number, path), result in zip(jobs, done, strict=True):
            if kind == "output":
                # An output LibreOffice cannot open is compared as is: openpyxl says why.
                outputs[number] = result or path
                if result is not None:
                    recalculated.add(number)
            elif result is None:
                raise RecalcError(f"LibreOffice could not recalculate the gold answer {path}")
            else:
                golds[number] = _store(result, stale[number])
        return outputs, golds, recalculated

    def _recalculate_each(self, paths: list[Path], tmp: Path) -> list[Path | None]:
        """Recalculate in one call; if it fails, file by file (None where one fails)."""
        try:
            return list(recalculate(paths, tmp / "batch", timeout_s=self.timeout_s))
        except RecalcError:
            if soffice_path() is None:
                raise
        results: list[Path | None] = []
        for i, path in enumerate(paths):
            try:
                results += recalculate([path], tmp / f"one-{i}", timeout_s=self.timeout_s)
            except RecalcError:
                results.append(None)
        return results


def _store(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` atomically (the gold recalculation cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    os.close(fd)
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target


def _output_paths(cases: Sequence[TestCase], answer: object) -> list[Path | None] | str:
    """Map the answer to one output path per case, or an error message."""
    if isinstance(answer, str | os.PathLike) and not isinstance(answer, bool):
        path = Path(answer)
        if path.is_dir():
            return [path / c.output for c in cases]
        if len(cases) == 1:
            return [path]
        if not path.exists():
            return f"answer path does not exist: {path}"
        return (
            f"answer is one file but the task has {len(cases)} test cases; "
            "give the workspace directory or one path per case"
        )
    if isinstance(answer, list | tuple):
        if len(answer) != len(cases) or not all(isinstance(p, str | os.PathLike) for p in answer):
            return f"answer list must hold {len(cases)} paths, one per test case"
        return [Path(p) for p in answer]
    if isinstance(answer, dict):
        paths: list[Path | None] = []
        for c in cases:
            value = answer.get(c.number, answer.get(str(c.number), answer.get(c.output)))
            if value is not None and not isinstance(value, str | os.PathLike):
                return f"answer for case {c.number} is a {type(value).__name__}, not a path"
            paths.append(Path(value) if value is not None else None)
        return paths
    return (
        f"answer is a {type(answer).__name__}; expected the workspace directory, "
        "a list of output paths or a dict of case -> path"
    )


def _load(path: Path, data_only: bool) -> Any:
    """openpyxl workbook, without the warnings openpyxl prints for unsupported features."""
    import openpyxl

    return openpyxl.load_workbook(path, data_only=data_only)


def _range_sheet(cell_range: CellRange, first_sheet: str) -> str:
    """The range's sheet; a bare range means the (gold) workbook's first sheet."""
    return cell_range.sheet if cell_range.sheet is not None else first_sheet


def uncached_formula_cells(path: Path, ranges: list[CellRange]) -> list[str]:
    """Checked cells of ``path`` that hold a formula but no cached value."""
    key = tuple((r.sheet, r.min_col, r.min_row, r.max_col, r.max_row) for r in ranges)
    return list(_uncached_formula_cells(str(path), path.stat().st_mtime_ns, key))


@functools.lru_cache(maxsize=256)
def _uncached_formula_cells(
    path_text: str, _mtime_ns: int, ranges_key: tuple[tuple[str | None, int, int, int, int], ...]
) -> tuple[str, ...]:
    """Cached worker of :func:`uncached_formula_cells` (keyed by path, mtime and ranges)."""
    from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

    path = Path(path_text)
    ranges = [
        CellRange(sheet=k[0], min_col=k[1], min_row=k[2], max_col=k[3], max_row=k[4])
        for k in ranges_key
    ]
    try:
        values = _load(path, data_only=True)
        formulas = _load(path, data_only=False)
    except Exception:  # noqa: BLE001 - an unreadable workbook is reported by the comparison
        return []
    found = []
    for cell_range in ranges:
        sheet = _range_sheet(cell_range, formulas.sheetnames[0])
        if sheet not in formulas.sheetnames:
            continue
        ws_f, ws_v = formulas[sheet], values[sheet]
        for name in cell_range.cells():
            formula = ws_f[name].value
            is_formula = isinstance(formula, ArrayFormula | DataTableFormula) or (
                isinstance(formula, str) and formula.startswith("=")
            )
            if is_formula and ws_v[name].value is None:
                found.append(f"'{sheet}'!{name}")
    return tuple(found)


def _require_cached(path: Path, ranges: list[CellRange], what: str) -> None:
    """Raise when checked cells hold formulas without cached values (needs LibreOffice)."""
    missing = uncached_formula_cells(path, ranges)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise RecalcError(
            f"{what} has {len(missing)} formula cell(s) without a cached value ({shown}); "
            f"they must be recalculated with LibreOffice, which is not installed: {INSTALL_HINT}"
        )


def compare_workbooks(gold: Path, output: Path, ranges: list[CellRange]) -> tuple[bool, str]:
    """The official ``compare_workbooks`` for one test case: ``(passed, message)``."""
    try:
        wb_gold = _load(gold, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for bad files
        raise TaskError(f"cannot open gold answer {gold}: {exc}") from None
    try:
        wb_out = _load(output, data_only=True)
    except Exception as exc:  # noqa: BLE001
        return False, f"cannot open output workbook: {type(exc).__name__}: {exc}"
    for cell_range in ranges:
        sheet = _range_sheet(cell_range, wb_gold.sheetnames[0])
        if sheet not in wb_gold.sheetnames:
            raise TaskError(f"gold answer {gold.name} has no worksheet {sheet!r}")
        if sheet not in wb_out.sheetnames:
            return False, f"worksheet {sheet!r} not found in the output"
        ws_gold, ws_out = wb_gold[sheet], wb_out[sheet]
        for name in cell_range.cells():
            expected, got = ws_gold[name].value, ws_out[name].value
            if not cells_equal(expected, got):
                return False, f"value differs at '{sheet}'!{name}: gold {expected!r}, got {got!r}"
    return True, ""


__all__ = [
    "CaseResult",
    "SpreadsheetSuite",
    "TestCase",
    "cells_equal",
    "compare_workbooks",
    "transform_value",
    "uncached_formula_cells",
]
